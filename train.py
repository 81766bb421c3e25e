"""Train one paper's model on its tiny synthetic task:  python train.py NAME [flags]

    python train.py transformer            # Vaswani et al. 2017 on toy translation
    python train.py transformer --help     # that experiment's flags

Sections, top to bottom: helpers (device, errors, output), the shared training loop, the experiments
(one function per paper, each with its own sub-command), the command line. The data generators live
in tasks.py. Every run prints a progress line every --eval-every steps, stops early once the held-out
target is reached ("solved at step N in S s"), and ends with a line `result: {json}`.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

import tasks

TEST_SEED = 1_000_003  # the held-out test sets come from this seed, never from --seed


# ---------------------------------------------------------------------------------------------
# Helpers: errors, device, output
# ---------------------------------------------------------------------------------------------

class UsageError(Exception):
    """Bad input from the command line: reported as one line on stderr with exit code 2."""


def pick_device(name):
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if torch.backends.mps.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: CUDA is not available on this machine")
    if name == "mps" and not torch.backends.mps.is_available():
        raise UsageError("--device mps: Apple MPS is not available on this machine")
    try:
        torch.device(name)
    except RuntimeError:
        raise UsageError(f"--device {name}: unknown device (use auto, cpu, cuda, cuda:N or mps)")
    return name


def seed_everything(seed):
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def count_parameters(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def out_path(args, filename):
    """A path under --out (created on demand), or None when --out is not given."""
    if not args.out:
        return None
    os.makedirs(args.out, exist_ok=True)
    return os.path.join(args.out, filename)


def save_png(args, filename, draw):
    """Call draw(plt) and save the figure under --out, if --out is given and matplotlib present."""
    path = out_path(args, filename)
    if path is None:
        return None
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig = plt.figure(figsize=(8, 5))
    draw(plt)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"saved {path}")
    return path


def save_loss_curves(args, curves, filename="loss.png"):
    """curves: {label: [loss per step]} -> one PNG with a line per label."""
    def draw(plt):
        for label, losses in curves.items():
            plt.plot(np.arange(1, len(losses) + 1), losses, label=label, linewidth=1)
        plt.yscale("log")
        plt.xlabel("step")
        plt.ylabel("training loss")
        plt.legend()
    return save_png(args, filename, draw)


SHADES = " ░▒▓█"


def print_heatmap(matrix, row_labels, col_labels, title):
    """A terminal picture of a [rows, cols] matrix of values in [0, 1] (e.g. attention weights)."""
    matrix = np.asarray(matrix, dtype=float)
    scale = matrix.max() if matrix.max() > 0 else 1.0
    width = max(len(str(r)) for r in row_labels)
    print(title)
    labels = [str(c)[:8] for c in col_labels]
    for depth in range(max(len(c) for c in labels)):  # column labels written downwards
        print(" " * (width + 1) + "".join(c[depth] if depth < len(c) else " " for c in labels))
    for label, row in zip(row_labels, matrix):
        cells = "".join(SHADES[min(int(v / scale * len(SHADES)), len(SHADES) - 1)] for v in row)
        print(f"{str(label):>{width}} {cells}")


def save_heatmap(args, filename, matrix, row_labels, col_labels, title):
    def draw(plt):
        plt.imshow(np.asarray(matrix), cmap="Greys", aspect="auto")
        plt.xticks(range(len(col_labels)), col_labels, rotation=90, fontsize=7)
        plt.yticks(range(len(row_labels)), row_labels, fontsize=7)
        plt.title(title)
    return save_png(args, filename, draw)


def print_table(headers, rows):
    """A Markdown table, so that it pastes into README as is."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    line = lambda row: "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |"
    print(line(cells[0]))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells[1:]:
        print(line(row))


def mean_spread(values):
    """'mean ± std' of a list of numbers (std 0 for a single value)."""
    values = np.asarray(values, dtype=float)
    return f"{values.mean():.3f} ± {values.std():.3f}"


# ---------------------------------------------------------------------------------------------
# The shared training loop and the result line
# ---------------------------------------------------------------------------------------------

def train(model, args, next_batch, loss_fn, evaluate, solved, optimizer=None, lr_at=None,
          clip=None, label=""):
    """Train until solved(metrics) on the held-out set, or until args.steps.

    next_batch() -> a training batch (fresh, from a seeded stream); loss_fn(model, batch) -> loss;
    evaluate(model) -> {metric: value} on the held-out set (run under no_grad in eval mode);
    lr_at(step) -> learning rate for that step (None: keep the optimiser's). Returns a dict with
    steps, seconds, solved, metrics (the last evaluation) and losses (one per step).
    """
    optimizer = optimizer or torch.optim.AdamW(model.parameters(), lr=args.lr)
    prefix = f"[{label}] " if label else ""
    losses, metrics, is_solved, start = [], {}, False, time.time()
    step = 0
    for step in range(1, args.steps + 1):
        if lr_at is not None:
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step)
        model.train()
        loss = loss_fn(model, next_batch())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        losses.append(loss.item())
        if not math.isfinite(losses[-1]):
            print(f"{prefix}step {step}: loss is {losses[-1]}; stopping (try a smaller --lr)")
            break
        if step % args.eval_every == 0 or step == args.steps:
            model.eval()
            with torch.no_grad():
                metrics = evaluate(model)
            shown = " | ".join(f"{k} {v:.4f}" for k, v in metrics.items()
                               if isinstance(v, (int, float)))
            recent = np.mean(losses[-args.eval_every:])
            print(f"{prefix}step {step:>6} | loss {recent:.4f} | {shown} | {time.time() - start:.1f} s",
                  flush=True)
            if solved(metrics):
                is_solved = True
                print(f"{prefix}solved at step {step} in {time.time() - start:.1f} s", flush=True)
                break
    return {"steps": step, "seconds": round(time.time() - start, 2), "solved": is_solved,
            "metrics": metrics, "losses": losses}


def result_line(args, experiment, task, variant, run, metrics=None, model=None):
    """Print `result: {json}` and write result.json (and the checkpoint model.pt) under --out."""
    result = {"experiment": experiment, "task": task, "variant": variant, "device": args.device,
              "steps": run["steps"], "seconds": run["seconds"], "solved": run["solved"],
              "metrics": metrics if metrics is not None else run["metrics"]}
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


# ---------------------------------------------------------------------------------------------
# Toy translation: shared by the Transformer and Bahdanau experiments
# ---------------------------------------------------------------------------------------------

def translation_task(args):
    task = tasks.ToyTranslation(args.min_len, args.max_len)
    test_pairs = task.pairs(args.test_size, np.random.default_rng(TEST_SEED))
    return task, test_pairs


def translation_scores(task, pairs, exact, correct):
    """exact[n] (bool), correct[n] (tokens right, EOS included) -> overall and per-length-bucket."""
    lengths = np.array([len(s) for s, _ in pairs])
    totals = np.array([len(t) + 1 for _, t in pairs])
    exact, correct = np.asarray(exact, dtype=float), np.asarray(correct, dtype=float)
    scores = {"exact_match": exact.mean(), "token_accuracy": correct.sum() / totals.sum()}
    for lo, hi in task.buckets():
        inside = (lengths >= lo) & (lengths <= hi)
        scores[f"len {lo}-{hi}"] = {"exact_match": round(exact[inside].mean(), 4),
                                    "token_accuracy": round(correct[inside].sum() / totals[inside].sum(), 4)}
    return scores


def teacher_forced_scores(model, task, pairs, device, batch_size=250):
    """Every target token right when fed the true prefix: the cheap check run during training.
    (On this task it agreed with greedy decoding's exact-match; the final numbers are greedy.)"""
    exact, correct = [], []
    for i in range(0, len(pairs), batch_size):
        src, tgt = (t.to(device) for t in task.collate(pairs[i:i + batch_size]))
        prediction = model(src, tgt[:, :-1]).argmax(-1)
        gold = tgt[:, 1:]
        right = (prediction == gold) & (gold != tasks.PAD)
        correct += right.sum(1).tolist()
        exact += (right.sum(1) == (gold != tasks.PAD).sum(1)).tolist()
    return translation_scores(task, pairs, exact, correct)


def decoded_scores(decode, task, pairs, device, batch_size=250):
    """decode(src [B, S]) -> LongTensor [B, L] of output ids (EOS ends a sentence)."""
    exact, correct = [], []
    for i in range(0, len(pairs), batch_size):
        chunk = pairs[i:i + batch_size]
        src, _ = task.collate(chunk)
        for hypothesis, (_, target) in zip(decode(src.to(device)).tolist(), chunk):
            reference = target + [tasks.EOS]
            hypothesis = hypothesis[: hypothesis.index(tasks.EOS) + 1] if tasks.EOS in hypothesis else hypothesis
            correct.append(sum(h == r for h, r in zip(hypothesis, reference)))
            exact.append(hypothesis == reference)
    return translation_scores(task, pairs, exact, correct)


def print_bucket_table(task, scores_by_variant):
    """Exact-match and token accuracy per source-length bucket, one column pair per variant."""
    headers = ["source length"]
    for variant in scores_by_variant:
        headers += [f"{variant} exact", f"{variant} token acc"]
    rows = []
    for lo, hi in task.buckets() + [None]:
        name = f"len {lo}-{hi}" if lo is not None else "all"
        row = [name if lo is not None else "**all**"]
        for scores in scores_by_variant.values():
            cell = scores[name] if lo is not None else scores
            row += [f"{cell['exact_match']:.3f}", f"{cell['token_accuracy']:.3f}"]
        rows.append(row)
    print_table(headers, rows)


def add_translation_args(p, max_len):
    p.add_argument("--min-len", type=positive_int, default=4, help="shortest source sentence (tokens)")
    p.add_argument("--max-len", type=positive_int, default=max_len, help="longest source sentence (tokens)")
    p.add_argument("--test-size", type=positive_int, default=1000, help="held-out sentences")
    p.add_argument("--beam", type=positive_int, default=1,
                   help="beam width for the final held-out decoding (1 = greedy)")


def check_translation_args(args):
    if args.min_len < 2 or args.min_len > args.max_len:
        raise UsageError(f"need 2 <= --min-len <= --max-len, got {args.min_len} and {args.max_len}")


# ---------------------------------------------------------------------------------------------
# Experiments: one function per paper
# ---------------------------------------------------------------------------------------------

# --- Bahdanau, Cho, Bengio 2014: bahdanau.py --------------------------
# (bahdanau: experiment goes here)

# --- Sukhbaatar et al. 2015: memn2n.py --------------------------------
# (memn2n: experiment goes here)

# --- Vaswani et al. 2017: transformer.py ------------------------------
# (transformer: experiment goes here)

# --- Ramsauer et al. 2020: hopfield.py --------------------------------
# (hopfield: experiment goes here)

# --- Golovneva et al. 2024: cope.py -----------------------------------
# (cope: experiment goes here)

# --- Golovneva et al. 2025: mta.py ------------------------------------
# (mta: experiment goes here)



# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------

class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line and exit code 2, instead of usage + message
        raise UsageError(message)


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def add_experiment(subparsers, name, run, summary, steps, batch_size, lr, eval_every):
    """One sub-command with the flags every experiment shares; returns it for its own flags."""
    p = subparsers.add_parser(name, help=summary, description=summary,
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--steps", type=positive_int, default=steps, help="most training steps")
    p.add_argument("--batch-size", type=positive_int, default=batch_size, help="sequences per step")
    p.add_argument("--lr", type=positive_float, default=lr, help="(peak) learning rate")
    p.add_argument("--seed", type=int, default=0, help="seeds the model and the training data")
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda or mps")
    p.add_argument("--eval-every", type=positive_int, default=eval_every,
                   help="steps between held-out evaluations and progress lines")
    p.add_argument("--out", metavar="DIR", help="write model.pt, result.json and PNG pictures here")
    p.add_argument("--compare", action="store_true",
                   help="also train the paper's baselines at equal size and print a table")
    p.set_defaults(run=run)
    return p


def build_parser():
    parser = Parser(description="Train one paper's model on its tiny synthetic task.",
                    epilog="Run 'python train.py NAME --help' for the flags of one experiment.")
    subparsers = parser.add_subparsers(dest="name", metavar="NAME", required=True,
                                       parser_class=Parser)
    # (bahdanau: sub-command goes here)
    # (memn2n: sub-command goes here)
    # (transformer: sub-command goes here)
    # (hopfield: sub-command goes here)
    # (cope: sub-command goes here)
    # (mta: sub-command goes here)
    return parser


def main(argv=None):
    try:
        args = build_parser().parse_args(argv)
        args.device = pick_device(args.device)
        args.run(args)
    except UsageError as error:
        print(f"train.py: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
