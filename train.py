"""Train one paper's model on its tiny synthetic task:  python train.py NAME [flags]

    python train.py transformer            # Vaswani et al. 2017 on toy translation
    python train.py transformer --help     # that experiment's flags
    torchrun --nproc_per_node=4 train.py transformer    # data parallel: 4 GPUs (or CPU processes)

This file holds what the six experiments share: device, torchrun and seeding; the training loop and
its schedule; the result line, checkpoint, pictures and tables; the command line. Each paper's
experiment (its task, flags, run, pictures, table) is experiments/NAME_experiment.py, and its model
the root file NAME.py: `python train.py cope` reads train.py, experiments/cope_experiment.py, cope.py.
A run prints a progress line every --eval-every steps, stops once the held-out target is reached
("solved at step N in S s"), and ends with a line `result: {json}`. Under torchrun every rank trains
a replica on batches of its own (--batch-size is per rank); rank 0 alone prints and writes.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from experiments import (bahdanau_experiment, cope_experiment, hopfield_experiment, memn2n_experiment,
                         mta_experiment, transformer_experiment)

# python train.py NAME runs EXPERIMENTS[NAME].run(args); each module also declares NAME's flags
EXPERIMENTS = {"bahdanau": bahdanau_experiment, "memn2n": memn2n_experiment,
               "transformer": transformer_experiment, "hopfield": hopfield_experiment,
               "cope": cope_experiment, "mta": mta_experiment}
TEST_SEED = 1_000_003  # the held-out test sets come from this seed, never from --seed


class UsageError(Exception):
    """Bad input from the command line: reported as one line on stderr with exit code 2."""


# ---------------------------------------------------------------------------------------------
# Device, torchrun, seeding
# ---------------------------------------------------------------------------------------------

def pick_device(name):
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: CUDA is not available on this machine")
    if name == "mps" and not torch.backends.mps.is_available():
        raise UsageError("--device mps: Apple MPS is not available on this machine")
    try:
        torch.device(name)
    except RuntimeError:
        raise UsageError(f"--device {name}: unknown device (use auto, cpu, cuda, cuda:N or mps)")
    return name


def rank():
    return dist.get_rank() if dist.is_initialized() else 0


def join_ranks(device):
    """Under `torchrun --nproc_per_node=N` (WORLD_SIZE > 1): join the process group, nccl with one
    GPU per rank on CUDA, gloo on the CPU, and return this rank's device. Ranks > 0 train in step
    but print nothing."""
    if int(os.environ.get("WORLD_SIZE", 1)) <= 1:
        return device
    if device.startswith("cuda"):
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        if local_rank >= torch.cuda.device_count():
            raise UsageError(f"torchrun: rank {local_rank} has no GPU ({torch.cuda.device_count()} present)")
        device, backend = f"cuda:{local_rank}", "nccl"
        torch.cuda.set_device(local_rank)
    elif device == "cpu":
        backend = "gloo"
    else:
        raise UsageError(f"torchrun: data-parallel runs need --device cuda or cpu, not {device}")
    dist.init_process_group(backend)
    if rank() > 0:
        sys.stdout = open(os.devnull, "w")
    return device


def mean_over_ranks(value):
    """A scalar tensor averaged over the ranks (itself when there is one process)."""
    if dist.is_initialized():
        value = value.clone()
        dist.all_reduce(value)
        value /= dist.get_world_size()
    return value


def rank0_decides(flag, device):
    """Rank 0's yes or no, on every rank: all ranks must stop training at the same step."""
    if not dist.is_initialized():
        return flag
    flag = torch.tensor([int(flag)], device=device)
    dist.broadcast(flag, src=0)
    return bool(flag.item())


def seed_everything(seed):
    """Seed torch (the same on every rank, so all copies of the model start equal) and return the
    numpy generator of the training batches: under torchrun, rank r > 0 draws a stream of its own."""
    torch.manual_seed(seed)
    return np.random.default_rng(seed if rank() == 0 else [seed, rank()])


def count_parameters(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def pad_batch(sequences, pad=0):
    """Right-pad a list of token-id lists into a LongTensor [B, max_len]."""
    width = max(len(s) for s in sequences)
    out = torch.full((len(sequences), width), pad, dtype=torch.long)
    for row, seq in enumerate(sequences):
        out[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
    return out


# ---------------------------------------------------------------------------------------------
# The training loop and its schedule
# ---------------------------------------------------------------------------------------------

def training_loop(model, optimizer, next_batch, loss_fn, evaluate, solved, steps, eval_every,
                  lr_at=None, clip=None, label="", device="cpu", dtype="float32", compile=False):
    """Train until solved(metrics) on the held-out set, or for `steps` steps.

    next_batch() -> a training batch (fresh, from a seeded stream); loss_fn(model, batch) -> loss;
    evaluate(model) -> {metric: value} on the held-out set (run under no_grad in eval mode), every
    eval_every steps; lr_at(step) -> learning rate for that step (None: keep the optimiser's).
    device, dtype, compile: the run's (see `precision`). Returns a dict with steps, seconds, solved,
    metrics (the last evaluation) and losses (one per step).
    """
    # the module the training steps run through: compiled (--compile), then one replica per rank
    # under torchrun, whose gradients DistributedDataParallel averages in backward
    trained = torch.compile(model) if compile else model
    if dist.is_initialized():
        index = torch.device(device).index
        trained = DistributedDataParallel(trained, device_ids=[index] if device.startswith("cuda") else None)
    # --dtype bfloat16: matmuls in bf16 under autocast; the model files keep in float32 what the
    # papers' math needs there (softmax, CoPE's gates and counts), and the weights stay float32
    mixed_precision = torch.autocast(torch.device(device).type, dtype=torch.bfloat16,
                                     enabled=dtype == "bfloat16")
    prefix = f"[{label}] " if label else ""
    losses, metrics, is_solved, start = [], {}, False, time.time()
    step = 0
    for step in range(1, steps + 1):
        if lr_at is not None:
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step)
        trained.train()
        with mixed_precision:
            loss = loss_fn(trained, next_batch())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        losses.append(mean_over_ranks(loss.detach()).item())
        if not math.isfinite(losses[-1]):
            print(f"{prefix}step {step}: loss is {losses[-1]}; stopping (try a smaller --lr)")
            break
        if step % eval_every == 0 or step == steps:
            model.eval()
            with torch.no_grad():
                metrics = evaluate(model)
            shown = " | ".join(f"{k} {v:.4f}" for k, v in metrics.items()
                               if isinstance(v, (int, float)))
            recent = np.mean(losses[-eval_every:])
            print(f"{prefix}step {step:>6} | loss {recent:.4f} | {shown} | {time.time() - start:.1f} s",
                  flush=True)
            if rank0_decides(solved(metrics), loss.device):
                is_solved = True
                print(f"{prefix}solved at step {step} in {time.time() - start:.1f} s", flush=True)
                break
    return {"steps": step, "seconds": round(time.time() - start, 2), "solved": is_solved,
            "metrics": metrics, "losses": losses}


def precision(args):
    """The loop's device, dtype and compile flags from the command line: training_loop(..., **precision(args))."""
    return {"device": args.device, "dtype": args.dtype, "compile": args.compile}


def warmup_cosine(step, peak, warmup, total):
    """Learning rate: linear warmup to peak, then cosine decay to 0.1 x peak at step total."""
    if step <= warmup:
        return peak * step / warmup
    return peak * (0.1 + 0.45 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup))))


# ---------------------------------------------------------------------------------------------
# Output: the result line and checkpoint, the tables (experiments/pictures.py draws)
# ---------------------------------------------------------------------------------------------

def out_path(args, filename):
    """A path under --out (created on demand), or None when --out is not given."""
    if not args.out or rank() > 0:  # under torchrun, rank 0 alone writes
        return None
    os.makedirs(args.out, exist_ok=True)
    return os.path.join(args.out, filename)


def result_line(args, task, variant, run, metrics, model):
    """Print `result: {json}` and write result.json and the checkpoint model.pt under --out."""
    result = {"experiment": args.name, "task": task, "variant": variant, "device": args.device,
              "dtype": args.dtype, "ranks": dist.get_world_size() if dist.is_initialized() else 1,
              "steps": run["steps"], "seconds": run["seconds"], "solved": run["solved"],
              "metrics": metrics}
    print("result: " + json.dumps(result), flush=True)
    suffix = "" if not args.compare else f"-{variant}"
    path = out_path(args, f"result{suffix}.json")
    if path:
        with open(path, "w") as f:
            json.dump(result, f, indent=2)
    path = out_path(args, f"model{suffix}.pt")
    if path and model is not None:
        config = getattr(model, "config", None)
        torch.save({"config": vars(config) if config is not None else None,
                    "state_dict": model.state_dict()}, path)
    return result


def print_table(headers, rows):
    """A Markdown table, so that it pastes into README as is."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    line = lambda row: "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |"
    print(line(cells[0]))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells[1:]:
        print(line(row))


def report(args, results, tables):
    """Every experiment's ending, from what its run(args) returns. results: [(task, variant, run,
    metrics, model)]; tables: [(caption or None, headers, rows)]. A single run ends with its result
    line, the tables above it; a comparison (--compare, several seeds) prints the tables last."""
    def print_tables():
        for caption, headers, rows in tables:
            if caption is not None:
                print(caption)
            print_table(headers, rows)

    comparison = args.compare or (getattr(args, "seeds", None) or 1) > 1
    if not comparison:
        print_tables()
    lines = [result_line(args, *result) for result in results]
    if comparison:
        print_tables()
    return lines


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------

class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line and exit code 2, instead of usage + message
        raise UsageError(message)


def positive(convert, what):
    """An argparse type: text -> convert(text), which must be finite and > 0."""
    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        if not (value > 0 and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
        return value
    return parse


positive_int, positive_float = positive(int, "a positive integer"), positive(float, "a positive number")


def add_shared_flags(p, steps, batch_size, lr, eval_every, lr_help="(peak) learning rate"):
    """The flags every experiment has, with that experiment's defaults. steps and eval_every may be
    text that describes a default the experiment works out itself (e.g. "one epoch"): the flag is
    then absent from args unless given (read it with getattr(args, "steps", None))."""
    def default(value, help):
        if isinstance(value, str):
            return {"default": argparse.SUPPRESS, "help": f"{help} (default: {value})"}
        return {"default": value, "help": help}

    p.add_argument("--steps", type=positive_int, **default(steps, "most training steps"))
    p.add_argument("--batch-size", type=positive_int, default=batch_size, help="sequences per step")
    p.add_argument("--lr", type=positive_float, default=lr, help=lr_help)
    p.add_argument("--seed", type=int, default=0, help="seeds the model and the training data")
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda or mps")
    p.add_argument("--eval-every", type=positive_int,
                   **default(eval_every, "steps between held-out evaluations and progress lines"))
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16"], default="auto",
                   help="training precision: bfloat16 = autocast (float32 weights); auto = bfloat16 on "
                        "CUDA, float32 elsewhere")
    p.add_argument("--compile", action="store_true",
                   help="train through torch.compile(model) (the first steps wait for the compiler)")
    p.add_argument("--out", metavar="DIR", help="write model.pt, result.json and PNG pictures here")
    p.add_argument("--compare", action="store_true",
                   help="also train the paper's baselines at equal size and print a table")


def build_parser():
    parser = Parser(description="Train one paper's model on its tiny synthetic task.",
                    epilog="Run 'python train.py NAME --help' for the flags of one experiment. Data "
                           "parallel: 'torchrun --nproc_per_node=N train.py NAME ...' (--batch-size is per rank).")
    subparsers = parser.add_subparsers(dest="name", metavar="NAME", required=True,
                                       parser_class=Parser)
    for name, experiment in EXPERIMENTS.items():
        p = subparsers.add_parser(name, help=experiment.SUMMARY, description=experiment.SUMMARY,
                                  formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        experiment.add_flags(p)
    return parser


def main(argv=None):
    try:
        args = build_parser().parse_args(argv)
        args.device = join_ranks(pick_device(args.device))
        if args.dtype == "auto":
            args.dtype = "bfloat16" if args.device.startswith("cuda") else "float32"
        results, tables = EXPERIMENTS[args.name].run(args)
        report(args, results, tables)
    except UsageError as error:
        print(f"train.py: error: {error}", file=sys.stderr)
        return 2
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    # run the module `train` that the experiments import, not this script's copy of it (__main__),
    # so that there is one UsageError and one training_loop
    import train
    sys.exit(train.main())
