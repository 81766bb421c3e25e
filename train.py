"""Train one paper's model on its tiny synthetic task:  python train.py NAME [flags]

    python train.py transformer            # Vaswani et al. 2017 on toy translation
    python train.py transformer --help     # that experiment's flags
    torchrun --nproc_per_node=4 train.py transformer    # data parallel: 4 GPUs (or CPU processes)

This file holds what the six experiments share: device, torchrun and seeding; the training loop, its
schedule and checkpoints (--out, Ctrl-C, --resume, --eval); the result line and tables; the command
line. Each paper's
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
import signal
import sys
import threading
import time
from dataclasses import dataclass

try:
    import numpy as np
    import torch
except ModuleNotFoundError as missing:  # a newcomer's first run: one line, not a traceback
    print(f"train.py: error: {missing.name} is not installed: pip install -r requirements.txt", file=sys.stderr)
    sys.exit(2)
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from experiments import (bahdanau_experiment, cope_experiment, hopfield_experiment, memn2n_experiment,
                         mta_experiment, transformer_experiment)

# python train.py NAME runs EXPERIMENTS[NAME].run(args); each module also declares NAME's flags
EXPERIMENTS = {"bahdanau": bahdanau_experiment, "memn2n": memn2n_experiment,
               "transformer": transformer_experiment, "hopfield": hopfield_experiment,
               "cope": cope_experiment, "mta": mta_experiment}
TEST_SEED = 1_000_003  # the held-out test sets come from this seed, never from --seed
MAX_STEPS, MAX_SEED = 10_000_000, 2**32 - 1


class UsageError(Exception):
    """Bad input from the command line: reported as one line on stderr with exit code 2."""


class Interrupted(Exception):
    """Ctrl-C during training, after the loop saved what it had: one line on stderr, exit code 130."""


# ---------------------------------------------------------------------------------------------
# Device, torchrun, seeding
# ---------------------------------------------------------------------------------------------

def pick_device(name):
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    kind, _, index = name.partition(":")
    if kind not in ("cpu", "cuda", "mps") or (index and not (kind == "cuda" and index.isdigit())):
        raise UsageError(f"--device {name}: unknown device (use auto, cpu, cuda, cuda:N or mps)")
    if kind == "cuda" and int(index or 0) >= torch.cuda.device_count():
        raise UsageError(f"--device {name}: no such CUDA device on this machine "
                         f"({torch.cuda.device_count()} present)")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise UsageError("--device mps: Apple MPS is not available on this machine")
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

@dataclass
class Checkpoint:
    """One training run's checkpoint: where training_loop writes model.pt (None: nowhere) with what a
    reload needs (the run's flags, its vocabulary), and the saved run it starts from under --resume
    or --eval (`start`, a loaded model.pt). `settings` makes one from the command line."""
    path: str | None
    result_path: str | None   # where result.json goes if the run is interrupted
    result: dict              # the result line's identity (experiment, task, variant, ...)
    flags: dict
    vocab: list | None = None
    start: dict | None = None
    evaluate_only: bool = False


def save_checkpoint(ckpt, model, optimizer, step, losses, seconds, state, finished):
    """model.pt: everything a reload needs, loadable with torch.load(weights_only=True)."""
    if ckpt is None or ckpt.path is None:
        return
    config = getattr(model, "config", None)
    training = {"step": step, "losses": losses, "seconds": seconds, "finished": finished,
                "optimizer": optimizer.state_dict(), "state": dict(state or {}),
                "torch_rng": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        training["cuda_rng"] = torch.cuda.get_rng_state()
    data = {"config": vars(config) if config is not None else None, "state_dict": model.state_dict(),
            "vocab": ckpt.vocab, "flags": ckpt.flags, "training": training}
    write_atomically(ckpt.path, lambda f: torch.save(data, f))


def training_loop(model, optimizer, next_batch, loss_fn, evaluate, solved, steps, eval_every,
                  lr_at=None, clip=None, label="", state=None, checkpoint=None, device="cpu",
                  dtype="float32", compile=False):
    """Train until solved(metrics) on the held-out set, or for `steps` steps.

    next_batch() -> a training batch (fresh, from a seeded stream); loss_fn(model, batch) -> loss;
    evaluate(model) -> {metric: value} on the held-out set (run under no_grad in eval mode), every
    eval_every steps; lr_at(step) -> learning rate for that step (None: keep the optimiser's).
    state: a dict of what evaluate keeps between calls, saved and restored with the checkpoint.
    checkpoint: a Checkpoint (or None): written at every evaluation, at the end and on Ctrl-C; its
    `start` resumes a saved run (or, evaluate_only, evaluates it). device, dtype, compile: the
    run's (see `settings`). Returns a dict with steps, seconds, solved, diverged, metrics (the
    last evaluation) and losses (one per step).
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
    losses, metrics, is_solved, diverged, done, earlier = [], {}, False, False, 0, 0.0
    start = checkpoint.start if checkpoint is not None else None
    if start is not None:  # --resume / --eval: the saved run's weights, optimiser, step and streams
        training = start["training"]
        model.load_state_dict(start["state_dict"])
        optimizer.load_state_dict(training["optimizer"])
        done, losses, earlier = training["step"], list(training["losses"]), training["seconds"]
        if state is not None:
            state.update(training["state"])
        for _ in range(done):  # replay the seeded batch stream up to where the run stopped
            next_batch()
        torch.set_rng_state(training["torch_rng"])
        if "cuda_rng" in training and torch.device(device).type == "cuda":
            torch.cuda.set_rng_state(training["cuda_rng"])
        if checkpoint.evaluate_only or training["finished"]:
            steps = done  # nothing left to train: evaluate it as it is
    stop_requested = []
    unread = []  # the losses of the steps since the last evaluation, still on the device

    def read_losses():
        """The one host synchronisation of a stretch of steps: its losses, read at once -> the first step whose
        loss is not finite, or None."""
        if not unread:
            return None
        values = mean_over_ranks(torch.stack(unread).float()).tolist()
        unread.clear()
        losses.extend(values)
        bad = [i for i, value in enumerate(values) if not math.isfinite(value)]
        return len(losses) - len(values) + 1 + bad[0] if bad else None

    def on_ctrl_c(signum, frame):  # finish the step, save, then stop; a second Ctrl-C stops at once
        if stop_requested:
            raise KeyboardInterrupt
        stop_requested.append(True)

    on_main_thread = threading.current_thread() is threading.main_thread()
    previous_handler = signal.signal(signal.SIGINT, on_ctrl_c) if on_main_thread else None
    begin = time.time()
    elapsed = lambda: earlier + time.time() - begin
    try:
        step = done
        for step in range(done + 1, steps + 1):
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
            unread.append(loss.detach())  # no .item() here: a step never waits for the device
            if rank0_decides(bool(stop_requested), loss.device):
                read_losses()
                save_checkpoint(checkpoint, model, optimizer, step, losses, elapsed(), state, False)
                if checkpoint is not None:   # the result so far, marked as interrupted
                    write_result(checkpoint.result_path, dict(checkpoint.result, steps=step, solved=False,
                                 seconds=round(elapsed(), 2), interrupted=True, metrics=metrics))
                raise Interrupted(step)
            if step % eval_every == 0 or step == steps:
                first_bad = read_losses()
                if first_bad is not None:
                    diverged = True
                    print(f"{prefix}step {first_bad}: loss is {losses[first_bad - 1]}; the run diverged "
                          "(try a smaller --lr)")
                    break
                is_solved, metrics = evaluate_and_print(model, evaluate, solved, losses[-eval_every:],
                                                        step, elapsed(), prefix, loss.device)
                save_checkpoint(checkpoint, model, optimizer, step, losses, elapsed(), state, is_solved)
                if is_solved:
                    print(f"{prefix}solved at step {step} in {elapsed():.1f} s", flush=True)
                    break
        if step == done:  # --eval, or a finished run resumed: one evaluation, no training
            is_solved, metrics = evaluate_and_print(model, evaluate, solved, losses[-eval_every:], step,
                                                    elapsed(), prefix, device)
        else:
            save_checkpoint(checkpoint, model, optimizer, step, losses, elapsed(), state, True)
    finally:
        if on_main_thread:
            signal.signal(signal.SIGINT, previous_handler)
    return {"steps": step, "seconds": round(elapsed(), 2), "solved": is_solved and not diverged,
            "diverged": diverged, "metrics": metrics, "losses": losses}


def evaluate_and_print(model, evaluate, solved, recent_losses, step, seconds, prefix, device):
    """One held-out evaluation and its progress line -> (solved, as rank 0 decides it; metrics)."""
    model.eval()
    with torch.no_grad():
        metrics = evaluate(model)
    shown = " | ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, (int, float)))
    recent = np.mean(recent_losses) if recent_losses else float("nan")
    print(f"{prefix}step {step:>6} | loss {recent:.4f} | {shown} | {seconds:.1f} s", flush=True)
    return rank0_decides(solved(metrics), device), metrics


def settings(args, task, variant, vocab=None):
    """What the command line says about one training run: training_loop(..., **settings(...)).
    task and variant name it in result.json; vocab goes into its checkpoint."""
    suffix = f"-{variant}" if args.compare else ""
    flags = {k: v for k, v in vars(args).items() if k not in ("start", "resume", "eval")}
    saved = Checkpoint(out_path(args, f"model{suffix}.pt"), out_path(args, f"result{suffix}.json"),
                       result_identity(args, task, variant), flags, vocab, args.start, args.eval is not None)
    return {"device": args.device, "dtype": args.dtype, "compile": args.compile, "checkpoint": saved}


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


def write_atomically(path, write):
    """write(file) into path.tmp, then rename: a reader (or a crash) never sees half a file."""
    with open(path + ".tmp", "wb") as f:
        write(f)
    os.replace(path + ".tmp", path)


def finite(value):
    """Strict JSON: NaN and infinities (a diverged run, an empty bucket) become null."""
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value.item() if isinstance(value, np.generic) else value


def result_identity(args, task, variant):
    return {"experiment": args.name, "task": task, "variant": variant, "device": args.device,
            "dtype": args.dtype, "ranks": dist.get_world_size() if dist.is_initialized() else 1}


def write_result(path, result):
    """Print `result: {json}` (strict JSON) and write it to path (None: print only)."""
    text = json.dumps(finite(result), allow_nan=False)
    print("result: " + text, flush=True)
    if path:
        write_atomically(path, lambda f: f.write(json.dumps(json.loads(text), indent=2).encode()))
    return json.loads(text)


def result_line(args, task, variant, run, metrics):
    """The result line, also written as result.json under --out (after training_loop's model.pt)."""
    result = dict(result_identity(args, task, variant), steps=run["steps"], seconds=run["seconds"],
                  solved=run["solved"], metrics=metrics)
    if run.get("diverged"):
        result["diverged"] = True
    return write_result(out_path(args, f"result{'-' + variant if args.compare else ''}.json"), result)


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
    lines = [result_line(args, task, variant, run, metrics) for task, variant, run, metrics, _ in results]
    if comparison:
        print_tables()
    return lines


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------

class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line and exit code 2, instead of usage + message
        raise UsageError(message)


def int_in(low, high):
    """An argparse type: an integer in [low, high] (sizes are bounded so that a typo fails at once,
    not after minutes, or in an out-of-memory crash)."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}")
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected an integer in [{low}, {high}], got {value}")
        return value
    return parse


def float_in(low, high):
    """An argparse type: a finite number in [low, high]."""
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}")
        if not low <= value <= high:   # also refuses nan
            raise argparse.ArgumentTypeError(f"expected a number in [{low}, {high}], got {text}")
        return value
    return parse


def add_shared_flags(p, steps, batch_size, lr, eval_every, lr_help="(peak) learning rate"):
    """The flags every experiment has, with that experiment's defaults. steps and eval_every may be
    text that describes a default the experiment works out itself (e.g. "one epoch"): the flag is
    then absent from args unless given (read it with getattr(args, "steps", None))."""
    def default(value, help):
        if isinstance(value, str):
            return {"default": argparse.SUPPRESS, "help": f"{help} (default: {value})"}
        return {"default": value, "help": help}

    p.add_argument("--steps", type=int_in(1, MAX_STEPS), **default(steps, "most training steps"))
    p.add_argument("--batch-size", type=int_in(1, 16384), default=batch_size, help="sequences per step")
    p.add_argument("--lr", type=float_in(1e-12, 1e30), default=lr, help=lr_help)
    p.add_argument("--seed", type=int_in(0, MAX_SEED), default=0, help="seeds the model and the training data")
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps")
    p.add_argument("--eval-every", type=int_in(1, MAX_STEPS),
                   **default(eval_every, "steps between held-out evaluations and progress lines"))
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16"], default="auto",
                   help="training precision: bfloat16 = autocast (float32 weights); auto = bfloat16 on "
                        "CUDA, float32 elsewhere")
    p.add_argument("--compile", action="store_true",
                   help="train through torch.compile(model) (the first steps wait for the compiler)")
    p.add_argument("--out", metavar="DIR", help="write model.pt, result.json and PNG pictures here")
    p.add_argument("--compare", action="store_true",
                   help="also train the paper's baselines at equal size and print a table")
    p.add_argument("--resume", metavar="DIR", help="continue the run saved in DIR/model.pt (a single "
                   "run's --out), with its flags, to the result it would have had uninterrupted")
    p.add_argument("--eval", metavar="DIR", help="evaluate the model saved in DIR/model.pt, no training")


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


def restore_run(args, parser):
    """--resume DIR / --eval DIR: the run's flags come from DIR/model.pt; the command line says only
    where to run it (--device, --dtype, --compile) and where to write (--out; --resume: DIR)."""
    if args.resume and args.eval:
        raise UsageError("give --resume or --eval, not both")
    folder = args.resume or args.eval
    path = os.path.join(folder, "model.pt")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        flags, saved["training"]["step"] = saved["flags"], int(saved["training"]["step"])
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file (--out of a single run holds one)")
    except Exception as error:  # not a file torch can read, or not one of train.py's checkpoints
        raise UsageError(f"{path}: not a checkpoint of train.py ({type(error).__name__})")
    if flags.get("name") != args.name:
        raise UsageError(f"{path} is a checkpoint of 'python train.py {flags.get('name')}', not {args.name}")
    if (flags.get("seeds") or 1) > 1:  # model.pt then holds the last seed's model alone
        raise UsageError(f"{path} comes from a run of several seeds: --resume and --eval take a single run")
    defaults = vars(parser.parse_args([args.name]))
    missing = [key for key in defaults if key not in flags and key not in ("resume", "eval")]
    if missing:  # a flag that came later: its default today need not be what the run used
        raise UsageError(f"{path} was written before train.py had --{missing[0].replace('_', '-')}: train it again")
    for key, value in vars(args).items():
        if key not in ("device", "dtype", "compile", "out", "resume", "eval", "start") and \
                value != defaults.get(key) and value != flags.get(key):
            raise UsageError(f"--{key.replace('_', '-')}: --resume and --eval take the run's flags from {path}")
    restored = argparse.Namespace(**flags)
    restored.device, restored.dtype, restored.compile = args.device, args.dtype, args.compile
    restored.out = args.out or (folder if args.resume else None)
    restored.resume, restored.eval, restored.start = args.resume, args.eval, saved
    return restored


def check_out(folder):
    """--out is checked before training, so that no finished run is lost at its end."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise UsageError(f"--out {folder}: a file of that name exists")
    try:
        os.makedirs(folder, exist_ok=True)
        write_atomically(os.path.join(folder, ".write-test"), lambda f: f.write(b""))
        os.remove(os.path.join(folder, ".write-test"))
    except OSError as error:
        raise UsageError(f"--out {folder}: cannot write there ({error.strerror})")


def main(argv=None):
    parser, args = build_parser(), None
    try:
        args = parser.parse_args(argv)
        args.start = None
        if args.resume or args.eval:
            args = restore_run(args, parser)
        if args.seed + (getattr(args, "seeds", None) or 1) - 1 > MAX_SEED:
            raise UsageError(f"--seed {args.seed} and --seeds: the last seed must be at most {MAX_SEED}")
        if args.out:
            check_out(args.out)
        args.device = join_ranks(pick_device(args.device))
        if args.dtype == "auto":
            args.dtype = "bfloat16" if args.device.startswith("cuda") else "float32"
        results, tables = EXPERIMENTS[args.name].run(args)
        report(args, results, tables)
    except UsageError as error:
        if int(os.environ.get("RANK", 0)) == 0:  # under torchrun, one line from rank 0
            print(f"train.py: error: {error}", file=sys.stderr)
        return 2
    except (Interrupted, KeyboardInterrupt) as stop:
        where = f"; the run so far is in {args.out}: python train.py {args.name} --resume {args.out}" \
            if isinstance(stop, Interrupted) and args.out else ""
        print(f"train.py: interrupted{f' at step {stop.args[0]}' if stop.args else ''}{where}", file=sys.stderr)
        return 130
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    # run the module `train` that the experiments import, not this script's copy of it (__main__),
    # so that there is one UsageError and one training_loop
    import train
    sys.exit(train.main())
