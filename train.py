"""Train one paper's model on its tiny synthetic task:  python train.py NAME [flags]

    python train.py transformer            # Vaswani et al. 2017 on toy translation
    python train.py transformer --help     # that experiment's flags
    torchrun --nproc_per_node=4 train.py transformer    # data parallel: 4 GPUs (or CPU processes)

Sections, top to bottom: helpers (device, errors, output), the shared training loop, the experiments
(one function per paper, each with its own sub-command), the command line. The data generators live
in tasks.py. Every run prints a progress line every --eval-every steps, stops early once the held-out
target is reached ("solved at step N in S s"), and ends with a line `result: {json}`.

Under torchrun every rank trains a replica on batches of its own (--batch-size is per rank) and
DistributedDataParallel averages the gradients; rank 0 alone prints and writes. --compile and
--dtype bfloat16 (the default on CUDA) are the other two ways to go faster; single runs on the CPU
are plain float32 eager PyTorch.
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
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

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


def rank():
    return dist.get_rank() if dist.is_initialized() else 0


def join_ranks(args):
    """Under `torchrun --nproc_per_node=N` (WORLD_SIZE > 1): join the process group, nccl with one
    GPU per rank on CUDA, gloo on the CPU. Ranks > 0 train in step but print nothing."""
    if int(os.environ.get("WORLD_SIZE", 1)) <= 1:
        return
    if args.device.startswith("cuda"):
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        if local_rank >= torch.cuda.device_count():
            raise UsageError(f"torchrun: rank {local_rank} has no GPU ({torch.cuda.device_count()} present)")
        args.device, backend = f"cuda:{local_rank}", "nccl"
        torch.cuda.set_device(local_rank)
    elif args.device == "cpu":
        backend = "gloo"
    else:
        raise UsageError(f"torchrun: data-parallel runs need --device cuda or cpu, not {args.device}")
    dist.init_process_group(backend)
    if rank() > 0:
        sys.stdout = open(os.devnull, "w")


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


def out_path(args, filename):
    """A path under --out (created on demand), or None when --out is not given."""
    if not args.out or rank() > 0:  # under torchrun, rank 0 alone writes
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
    # the module the training steps run through: compiled (--compile), then one replica per rank
    # under torchrun, whose gradients DistributedDataParallel averages in backward
    trained = torch.compile(model) if args.compile else model
    if dist.is_initialized():
        device = torch.device(args.device)
        trained = DistributedDataParallel(trained, device_ids=[device.index] if device.type == "cuda" else None)
    # --dtype bfloat16: matmuls in bf16 under autocast; the model files keep in float32 what the
    # papers' math needs there (softmax, CoPE's gates and counts), and the weights stay float32
    mixed_precision = torch.autocast(torch.device(args.device).type, dtype=torch.bfloat16,
                                     enabled=args.dtype == "bfloat16")
    prefix = f"[{label}] " if label else ""
    losses, metrics, is_solved, start = [], {}, False, time.time()
    step = 0
    for step in range(1, args.steps + 1):
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
        if step % args.eval_every == 0 or step == args.steps:
            model.eval()
            with torch.no_grad():
                metrics = evaluate(model)
            shown = " | ".join(f"{k} {v:.4f}" for k, v in metrics.items()
                               if isinstance(v, (int, float)))
            recent = np.mean(losses[-args.eval_every:])
            print(f"{prefix}step {step:>6} | loss {recent:.4f} | {shown} | {time.time() - start:.1f} s",
                  flush=True)
            if rank0_decides(solved(metrics), loss.device):
                is_solved = True
                print(f"{prefix}solved at step {step} in {time.time() - start:.1f} s", flush=True)
                break
    return {"steps": step, "seconds": round(time.time() - start, 2), "solved": is_solved,
            "metrics": metrics, "losses": losses}


def warmup_cosine(step, peak, warmup, total):
    """Learning rate: linear warmup to peak, then cosine decay to 0.1 x peak at step total."""
    if step <= warmup:
        return peak * step / warmup
    return peak * (0.1 + 0.45 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup))))


def result_line(args, experiment, task, variant, run, metrics=None, model=None):
    """Print `result: {json}` and write result.json (and the checkpoint model.pt) under --out."""
    result = {"experiment": experiment, "task": task, "variant": variant, "device": args.device,
              "dtype": args.dtype, "ranks": dist.get_world_size() if dist.is_initialized() else 1,
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


def until_eos(ids):
    """A decoded id list cut after its first EOS (kept whole if it has none)."""
    return ids[: ids.index(tasks.EOS) + 1] if tasks.EOS in ids else ids


def decoded_scores(decode, task, pairs, device, batch_size=250):
    """decode(src [B, S]) -> LongTensor [B, L] of output ids (EOS ends a sentence)."""
    exact, correct = [], []
    for i in range(0, len(pairs), batch_size):
        chunk = pairs[i:i + batch_size]
        src, _ = task.collate(chunk)
        for hypothesis, (_, target) in zip(decode(src.to(device)).tolist(), chunk):
            reference = target + [tasks.EOS]
            hypothesis = until_eos(hypothesis)
            correct.append(sum(h == r for h, r in zip(hypothesis, reference)))
            exact.append(hypothesis == reference)
    return translation_scores(task, pairs, exact, correct)


def print_bucket_table(task, scores_by_variant):
    """Exact-match and token accuracy per source-length bucket, one column pair per variant."""
    headers = ["source length"]
    for variant in scores_by_variant:
        headers += [f"{variant} exact", f"{variant} token acc"]
    rows = []
    for name in [f"len {lo}-{hi}" for lo, hi in task.buckets()] + ["all"]:
        row = [name]
        for scores in scores_by_variant.values():
            cell = scores if name == "all" else scores[name]
            row += [f"{cell['exact_match']:.3f}", f"{cell['token_accuracy']:.3f}"]
        rows.append(row)
    print_table(headers, rows)


def add_translation_args(p, max_len):
    p.add_argument("--min-len", type=positive_int, default=4, help="shortest source sentence (tokens)")
    p.add_argument("--max-len", type=positive_int, default=max_len, help="longest source sentence (tokens)")
    p.add_argument("--test-size", type=positive_int, default=1000, help="held-out sentences")
    p.add_argument("--beam", type=positive_int, default=1,
                   help="beam width for the final held-out decoding (1 = greedy)")
    p.add_argument("--target", type=float, default=0.99,
                   help="held-out exact match that counts as solved (teacher forced during training, "
                        "then checked with the final decoding)")


def check_translation_args(args):
    if args.min_len < 2 or args.min_len > args.max_len:
        raise UsageError(f"need 2 <= --min-len <= --max-len, got {args.min_len} and {args.max_len}")


def decode_held_out(args, task, test_pairs, module, model, variant):
    """Greedy (or --beam) decoding of the held-out set with module.greedy_decode / beam_search;
    returns the decode function and the scores."""
    model.eval()
    if args.beam == 1:
        decode = lambda src: module.greedy_decode(model, src, src.size(1) + 10)
    else:
        decode = lambda src: module.beam_search(model, src, args.beam, src.size(1) + 10)
    scores = decoded_scores(decode, task, test_pairs, args.device)
    print(f"[{variant}] held-out {'greedy' if args.beam == 1 else f'beam-{args.beam}'} decoding: "
          f"exact match {scores['exact_match']:.4f}, token accuracy {scores['token_accuracy']:.4f}")
    return decode, scores


def show_translation_attention(args, task, test_pairs, decode, weights_of, title, filename):
    """The attention of the model on the longest held-out sentence, as a terminal heat map and a PNG.
    weights_of(src [1, S], tgt_in [1, T]) -> [T, S] weights (rows: output words, columns: source)."""
    source, _ = max(test_pairs, key=lambda pair: len(pair[0]))
    src = torch.tensor([source], device=args.device)
    hypothesis = until_eos(decode(src)[0].tolist())
    with torch.no_grad():
        weights = weights_of(src, torch.tensor([[tasks.BOS] + hypothesis[:-1]], device=args.device))
    weights = weights.cpu().numpy()
    rows, cols = task.words(hypothesis), task.words(source)
    print_heatmap(weights, rows, cols, title)
    save_heatmap(args, filename, weights, rows, cols, title)


def report_translation(args, experiment, task, finished):
    """finished: [(variant, run, scores, model)] -> the per-length table and one result line each
    (with --compare: the result lines first, then the tables, as the contract asks)."""
    save_loss_curves(args, {variant: run["losses"] for variant, run, _, _ in finished})
    scores_by_variant = {variant: scores for variant, _, scores, _ in finished}
    if not args.compare:
        print_bucket_table(task, scores_by_variant)
    results = []
    for variant, run, scores, model in finished:
        run["solved"] = bool(scores["exact_match"] >= args.target)  # judged on decoded output
        metrics = dict(scores, final_loss=round(run["losses"][-1], 4), parameters=count_parameters(model))
        results.append(result_line(args, experiment, "toy-translation", variant, run, metrics, model))
    if args.compare:
        print_bucket_table(task, scores_by_variant)
        print()
        print_table(["variant", "parameters", "steps", "seconds", "exact match"],
                    [[r["variant"], r["metrics"]["parameters"], r["steps"], r["seconds"],
                      f"{r['metrics']['exact_match']:.3f}"] for r in results])
    return results


# ---------------------------------------------------------------------------------------------
# Experiments: one function per paper
# ---------------------------------------------------------------------------------------------

# --- Bahdanau, Cho, Bengio 2014: bahdanau.py --------------------------

def length_sorted_batches(task, batch_size, rng, pool=20):
    """Appendix B.2 of Bahdanau et al.: draw pool x batch_size pairs, sort them by source length and
    cut them into pool minibatches, served in random order. Less padding, so shorter decoder loops."""
    while True:
        pairs = sorted(task.pairs(batch_size * pool, rng), key=lambda pair: len(pair[0]))
        batches = [pairs[i:i + batch_size] for i in range(0, len(pairs), batch_size)]
        for k in rng.permutation(len(batches)):
            yield task.collate(batches[k])


def run_bahdanau(args):
    """Toy translation with RNNsearch (section 3). --compare adds RNNencdec at equal sizes, trained
    for exactly as many steps as RNNsearch took to solve the task (or --steps, if it never did), and
    prints exact match per source length: Figure 2 in miniature."""
    import bahdanau as bd
    check_translation_args(args)
    task, test_pairs = translation_task(args)
    variants = {"RNNsearch": bd.RNNSearch}
    if args.compare:
        variants["RNNencdec"] = bd.RNNEncDec
    finished, run_args = [], args
    for variant, model_class in variants.items():
        rng = seed_everything(args.seed)
        config = bd.BahdanauConfig(task.vocab_size, embed_dim=args.embed_dim, hidden=args.hidden,
                                   align_dim=args.align_dim, maxout_dim=args.maxout, pad=tasks.PAD,
                                   paper_init=args.paper_init)
        model = model_class(config).to(args.device)
        print(f"{variant}: {count_parameters(model):,} parameters, sentences of "
              f"{args.min_len}-{args.max_len} tokens, device {args.device}")
        batches = length_sorted_batches(task, args.batch_size, rng)

        def loss_fn(model, batch):
            src, tgt = batch
            logits = model(src, tgt[:, :-1])
            return F.cross_entropy(logits.flatten(0, 1), tgt[:, 1:].flatten(), ignore_index=tasks.PAD)

        run = train(model, run_args, lambda: [t.to(args.device) for t in next(batches)], loss_fn,
                    evaluate=lambda m: teacher_forced_scores(m, task, test_pairs, args.device),
                    solved=lambda metrics: variant == "RNNsearch" and metrics["exact_match"] >= args.target,
                    optimizer=torch.optim.Adam(model.parameters(), lr=args.lr), clip=args.clip,
                    label=variant)
        # equal steps: the baseline trains exactly as long as RNNsearch did, with no early stop
        run_args = argparse.Namespace(**dict(vars(args), steps=run["steps"]))
        decode, scores = decode_held_out(args, task, test_pairs, bd, model, variant)
        finished.append((variant, run, scores, model))
        if variant == "RNNsearch":
            show_translation_attention(
                args, task, test_pairs, decode, lambda s, t: model(s, t, return_weights=True)[1][0],
                "RNNsearch alignment alpha_ij (rows: output, columns: source)", "alignment.png")
    return report_translation(args, "bahdanau", task, finished)


# --- Sukhbaatar et al. 2015: memn2n.py --------------------------------

# Table 1 of the paper (bAbI 1k, test error %), the columns that vary the hops: 1 and 2 hops PE LS,
# 3 hops PE LS RN, all trained jointly on the 20 tasks (here: one task at a time). task -> hops -> %
MEMN2N_PAPER_ERRORS = {1: {1: 0.8, 2: 0.0, 3: 0.0}, 2: {1: 62.0, 2: 15.6, 3: 11.4},
                       3: {1: 76.9, 2: 31.6, 3: 21.9}}


def memn2n_read(folder, task, split):
    """The examples of the real bAbI file qa{task}_*_{split}.txt under folder."""
    try:
        names = sorted(name for name in os.listdir(folder)
                       if name.startswith(f"qa{task}_") and name.endswith(f"_{split}.txt"))
    except OSError as error:
        raise UsageError(f"--data {folder}: {error.strerror}")
    if not names:
        raise UsageError(f"--data {folder}: no file qa{task}_*_{split}.txt there")
    path = os.path.join(folder, names[0])
    try:
        with open(path, encoding="utf-8") as f:
            examples = tasks.babi_examples(tasks.parse_babi(f.read()))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise UsageError(f"--data: cannot read {path}: {error}")
    if not examples:
        raise UsageError(f"--data: {path} holds no questions")
    return examples


def memn2n_data(args, task):
    """Train / validation / test examples and their tensors. Generated: bAbI-sized training set from
    --seed, test set from TEST_SEED; or the real files under --data. As the paper, the last 10% of
    the training questions are held out for validation (linear start and early stopping use them)."""
    if args.data:
        train_examples, test_examples = (memn2n_read(args.data, task, split) for split in ("train", "test"))
    else:
        generate = lambda n, seed: tasks.babi_examples(tasks.babi_stories(task, n, np.random.default_rng(seed)))
        train_examples, test_examples = generate(args.train_size, args.seed), generate(args.test_size, TEST_SEED)
    if len(train_examples) < 10:
        raise UsageError(f"need at least 10 training questions, got {len(train_examples)}")
    held = len(train_examples) // 10
    examples = {"train": train_examples[:-held], "val": train_examples[-held:], "test": test_examples}
    vocab = tasks.babi_vocab(train_examples, test_examples)
    tensors = {split: [t.to(args.device) for t in tasks.babi_tensors(e, vocab, args.memory_size)]
               for split, e in examples.items()}
    return examples, tensors, vocab


def memn2n_scores(model, data, batch_size=500):
    """(mean loss, error rate) over story, query, answer tensors."""
    story, query, answer = data
    loss, wrong = 0.0, 0
    for i in range(0, len(answer), batch_size):
        logits = model(story[i:i + batch_size], query[i:i + batch_size])
        loss += F.cross_entropy(logits, answer[i:i + batch_size], reduction="sum").item()
        wrong += (logits.argmax(-1) != answer[i:i + batch_size]).sum().item()
    return loss / len(answer), wrong / len(answer)


def memn2n_train_one(args, task, hops, data, vocab, label):
    """One MemN2N trained the paper's way (section 4.2) on one task; returns (run, metrics, model)."""
    import memn2n as mn
    rng = seed_everything(args.seed)
    config = mn.MemN2NConfig(len(vocab), d=args.dim, hops=hops, memory_size=args.memory_size,
                             tying=args.tying, encoding=args.encoding, random_noise=args.random_noise)
    model = mn.MemN2N(config).to(args.device)
    model.linear_start = args.linear_start
    story, query, answer = data["train"]
    sentences = (story != 0).any(-1).sum(1)
    n = len(answer)
    batch_size = min(args.batch_size, n)
    per_epoch = n // batch_size
    run_args = argparse.Namespace(**vars(args))
    run_args.steps = getattr(args, "steps", None) or args.epochs * per_epoch
    run_args.eval_every = getattr(args, "eval_every", None) or per_epoch
    print(f"[{label}] bAbI task {task} ({tasks.BABI_TASKS[task]}), {hops} hops, {count_parameters(model):,} "
          f"parameters; {n} training / {len(data['val'][2])} validation / {len(data['test'][2])} test "
          f"questions; {run_args.steps} steps of {batch_size} ({per_epoch} steps an epoch)")

    def epochs():  # every training question once an epoch, in a fresh order
        while True:
            order = torch.from_numpy(rng.permutation(n)).to(args.device)
            for i in range(per_epoch):
                yield order[i * batch_size:(i + 1) * batch_size]

    batches = epochs()

    def next_batch():
        chosen = next(batches)
        width = int(sentences[chosen].max())  # slots that are padding in the whole batch only cost time
        return story[chosen, :width], query[chosen], answer[chosen]

    # Section 4.2: SGD, lr 0.01 (0.005 while linear start lasts) halved every 25 of 100 epochs; here
    # halved every quarter of the step budget. The paper sums the loss over the batch; we average it,
    # so the step size is lr x batch size and the norm clip 40 / batch size: the same update.
    quarter = max(1, run_args.steps // 4)
    lr_at = lambda step: (args.lr * batch_size * (0.5 if model.linear_start else 1.0)
                          * 0.5 ** ((step - 1) // quarter))
    best_val_loss = [math.inf]

    def evaluate(model):
        val_loss, val_error = memn2n_scores(model, data["val"])
        if model.linear_start:  # LS: the softmax comes back once the validation loss stops falling
            if val_loss < best_val_loss[0]:
                best_val_loss[0] = val_loss
            else:
                model.linear_start = False
                print(f"[{label}] validation loss stopped falling: linear start over, softmax back in every hop")
        test_error = memn2n_scores(model, data["test"])[1]
        return {"val_loss": val_loss, "val_error": val_error, "test_error": test_error}

    run = train(model, run_args, next_batch, lambda m, batch: F.cross_entropy(m(*batch[:2]), batch[2]),
                evaluate, solved=lambda m: not model.linear_start and m["val_error"] <= args.target_error,
                optimizer=torch.optim.SGD(model.parameters(), lr=args.lr), lr_at=lr_at,
                clip=40 / batch_size, label=label)
    model.eval()
    with torch.no_grad():
        test_loss, test_error = memn2n_scores(model, data["test"])
        val_error = memn2n_scores(model, data["val"])[1]
    print(f"[{label}] test error {100 * test_error:.1f}% (paper, Table 1 at 1k: "
          f"{MEMN2N_PAPER_ERRORS[task].get(hops, '-')}%)")
    metrics = {"test_error": round(test_error, 4), "test_loss": round(test_loss, 4),
               "val_error": round(val_error, 4), "final_loss": round(run["losses"][-1], 4),
               "hops": hops, "parameters": count_parameters(model), "training_questions": n}
    return run, metrics, model


def show_memn2n_hops(args, model, examples, data, vocab, minimum=8):
    """The paper's Figure 2 as text: a test story, the supporting facts marked, and each hop's
    attention on every sentence (also saved as hops.png)."""
    index = next((i for i, e in enumerate(examples) if len(e.memory) >= minimum), 0)
    example = examples[index]
    memory = example.memory[-args.memory_size:]
    offset = len(example.memory) - len(memory)
    model.eval()
    with torch.no_grad():
        guess = model(*(t[index:index + 1] for t in data[:2])).argmax(-1).item()
    weights = model.attention[0, :, :len(memory)].T.cpu().numpy()  # [sentences, hops]
    hops = [f"hop {k}" for k in range(1, weights.shape[1] + 1)]
    print(f"\nquestion: {' '.join(example.question)}?  answer: {example.answer}  model: {vocab[guess]}")
    print("support | " + " | ".join(hops) + " | sentence")
    for i, (words, row) in enumerate(zip(memory, weights)):
        mark = "   *   " if i + offset in example.support else "       "
        print(f"{mark} | " + " | ".join(f"{w:5.2f}" for w in row) + f" | {' '.join(words)}")
    labels = [("* " if i + offset in example.support else "  ") + " ".join(words)
              for i, words in enumerate(memory)]
    title = f"{' '.join(example.question)}? ({example.answer}): attention of each hop (* supporting fact)"
    print_heatmap(weights, labels, hops, title)
    save_heatmap(args, "hops.png", weights, labels, hops, title)


def run_memn2n(args):
    """3 hops with PE, LS and RN on one bAbI-style task; --compare trains 1, 2 and 3 hops on tasks
    1, 2 and 3 and prints the error table beside the paper's."""
    if args.memory_size < 1 or args.dim < 1:
        raise UsageError("--memory-size and --dim must be positive")
    if not 0 <= args.random_noise <= 1:
        raise UsageError(f"--random-noise must be in [0, 1], got {args.random_noise}")
    if args.train_size is None:
        args.train_size = 1000 if args.compare else 10000
    if args.epochs is None:
        args.epochs = 100 if args.compare else 40
    if args.target_error is None:  # the table trains until the validation set is all right
        args.target_error = 0.0 if args.compare else 0.03
    plan = [(t, k) for t in (1, 2, 3) for k in (1, 2, 3)] if args.compare else [(args.task, args.hops)]
    finished, curves, shown = [], {}, None
    for task in sorted({t for t, _ in plan}):
        examples, data, vocab = memn2n_data(args, task)
        for _, hops in (p for p in plan if p[0] == task):
            variant = f"task {task}, {hops} hop{'s' if hops > 1 else ''}" if args.compare else "memn2n"
            run, metrics, model = memn2n_train_one(args, task, hops, data, vocab, variant)
            curves[variant] = run["losses"]
            finished.append((f"babi-task{task}", variant, run, metrics, model))
            if hops == max(k for _, k in plan) and (task == args.task or shown is None):
                shown = (model, examples["test"], data["test"], vocab)
    show_memn2n_hops(args, *shown)
    save_loss_curves(args, curves)
    if not args.compare:
        print_memn2n_table(args, finished)
    results = [result_line(args, "memn2n", task, variant, run, metrics, model)
               for task, variant, run, metrics, model in finished]
    if args.compare:  # the result lines, then the table
        print_memn2n_table(args, finished)
    return results


def print_memn2n_table(args, finished):
    """Test error % per task and hops, beside Table 1 of the paper."""
    errors = {(int(task[-1]), m["hops"]): m["test_error"] for task, _, _, m, _ in finished}
    tasks_run, hops_run = sorted({t for t, _ in errors}), sorted({k for _, k in errors})
    here = "here" if args.data else f"here ({args.train_size / 1000:g}k)"
    headers = ["bAbI task"] + [f"{k} hop{'s' if k > 1 else ''} {who}" for k in hops_run for who in (here, "paper (1k)")]
    paper = lambda t, k: f"{MEMN2N_PAPER_ERRORS[t][k]:.1f}" if k in MEMN2N_PAPER_ERRORS[t] else "-"
    print_table(headers, [[f"{t}: {tasks.BABI_TASKS[t]}"] + [cell for k in hops_run
                                                              for cell in (f"{100 * errors[t, k]:.1f}", paper(t, k))]
                          for t in tasks_run])


# --- Vaswani et al. 2017: transformer.py ------------------------------

def run_transformer(args):
    """Toy translation with the encoder-decoder of Figure 1. --compare adds Table 3's row (A) with
    one head instead of several, at equal size (d_k = d_model, same parameter count)."""
    import transformer as tf
    check_translation_args(args)
    if not 0 <= args.label_smoothing < 1:
        raise UsageError(f"--label-smoothing must lie in [0, 1), got {args.label_smoothing}")
    task, test_pairs = translation_task(args)
    variants = {"transformer": args.heads}
    if args.compare:
        variants["one head"] = 1
    finished = []
    for variant, heads in variants.items():
        rng = seed_everything(args.seed)
        try:
            config = tf.TransformerConfig(task.vocab_size, d_model=args.d_model, n_layers=args.layers,
                                          n_heads=heads, d_ff=args.d_ff, dropout=args.dropout,
                                          max_len=args.max_len + 12, pad_id=tasks.PAD)
        except ValueError as error:
            raise UsageError(error)
        model = tf.Transformer(config).to(args.device)
        print(f"{variant}: {count_parameters(model):,} parameters, sentences of "
              f"{args.min_len}-{args.max_len} tokens, device {args.device}")

        def next_batch():
            return [t.to(args.device) for t in task.batch(args.batch_size, rng)]

        def loss_fn(model, batch):
            src, tgt = batch
            return tf.label_smoothed_loss(model(src, tgt[:, :-1]), tgt[:, 1:], args.label_smoothing, tasks.PAD)

        # eq. (3)'s linear warmup to --lr, then a linear decay to zero at --steps instead of its
        # step^-0.5 tail, which stays too high for a tiny model to settle (measured: 0.95 exact match
        # after 3000 steps with the tail, 0.976 after 2000 with the linear decay)
        lr_at = lambda step: args.lr * min(step / args.warmup, (args.steps - step + 1) / (args.steps - args.warmup + 1))
        run = train(model, args, next_batch, loss_fn,
                    evaluate=lambda m: teacher_forced_scores(m, task, test_pairs, args.device),
                    solved=lambda metrics: metrics["exact_match"] >= args.target,
                    optimizer=tf.make_optimizer(model), lr_at=lr_at, label=variant)
        decode, scores = decode_held_out(args, task, test_pairs, tf, model, variant)
        finished.append((variant, run, scores, model))
        if variant == "transformer":
            show_translation_attention(
                args, task, test_pairs, decode, lambda s, t: last_cross_attention(model, s, t),
                "encoder-decoder attention, last layer, mean of heads (rows: output, columns: source)",
                "attention.png")
    return report_translation(args, "transformer", task, finished)


def last_cross_attention(model, src, tgt_in):
    """[T, S]: the last decoder layer's encoder-decoder attention, averaged over heads."""
    cross_attn = model.decoder[-1].cross_attn
    cross_attn.keep_weights = True   # the written-out eq. (1), which keeps its map
    model(src, tgt_in)
    cross_attn.keep_weights = False
    return cross_attn.weights[0].mean(0)


# --- Ramsauer et al. 2020: hopfield.py --------------------------------

def run_hopfield(args):
    """--task mil: a HopfieldPooling classifier finds rare witnesses in bags; --compare adds mean and
    max pooling at equal size. --task retrieval: no training, the capacity table of section 2."""
    if args.task == "retrieval":
        return run_hopfield_retrieval(args)
    import hopfield as hf
    try:
        task = tasks.WitnessBags(args.dim or 16, args.bag_size, args.witnesses, args.noise)
        configs = {pooling: hf.HopfieldConfig(d_model=args.d_model, n_heads=args.heads, beta=args.beta,
                                              update_steps=args.update_steps, d_instance=task.dim,
                                              pooling=pooling)
                   for pooling in (["hopfield", "mean", "max"] if args.compare else ["hopfield"])}
    except ValueError as error:
        raise UsageError(error)
    test = [t.to(args.device) for t in task.batch(args.test_size, np.random.default_rng(TEST_SEED))]
    bayes = ((task.bayes_log_odds(test[0].cpu()) > 0).float() == test[1].cpu()).float().mean().item()
    print(f"bags of {task.bag_size} instances of width {task.dim}; positive bags hold "
          f"{task.witnesses} witnesses (witness rate {task.witnesses / task.bag_size:.2%}), noise {task.noise}; "
          f"an observer who knows the motif classifies {bayes:.3f} of the held-out bags right (the ceiling)")
    finished, curves, accuracies = [], {}, {}
    for variant, config in configs.items():
        rng, accuracies[variant] = seed_everything(args.seed), []
        model = hf.MILClassifier(config).to(args.device)
        print(f"{variant} pooling: {count_parameters(model):,} parameters, device {args.device}")

        def next_batch():
            return [t.to(args.device) for t in task.batch(args.batch_size, rng)]

        def loss_fn(model, batch):
            bags, labels, _ = batch
            return F.binary_cross_entropy_with_logits(model(bags)[0], labels)

        def evaluate(model):
            scores = mil_scores(model, test)
            accuracies[variant].append(scores["accuracy"])  # one per --eval-every steps
            return scores

        run = train(model, args, next_batch, loss_fn, evaluate,
                    solved=lambda metrics: metrics["accuracy"] >= args.target, label=variant)
        curves[variant] = run["losses"]
        metrics = dict(run["metrics"], final_loss=round(run["losses"][-1], 4),
                       parameters=count_parameters(model), bayes_accuracy=round(bayes, 4))
        finished.append((variant, run, metrics, model))
        if variant == "hopfield":
            show_bag_attention(args, model, test)
    save_loss_curves(args, curves)
    results = [result_line(args, "hopfield", "mil", *done) for done in finished]  # the last lines
    if args.compare:  # also each pooling's accuracy after as many steps as Hopfield pooling took
        budget = len(accuracies["hopfield"])
        print_table(["pooling", "parameters", "steps", "seconds", "test accuracy",
                     f"test accuracy at step {results[0]['steps']}", "attention on witnesses"],
                    [[r["variant"], r["metrics"]["parameters"], r["steps"], r["seconds"],
                      f"{r['metrics']['accuracy']:.3f}",
                      f"{accuracies[r['variant']][min(budget, len(accuracies[r['variant']])) - 1]:.3f}",
                      r["metrics"].get("witness_attention", "-")] for r in results])
    return results


def mil_scores(model, test, batch_size=250):
    """Held-out accuracy and loss; for Hopfield pooling also the attention mass on the witnesses of
    positive bags (1.0: the query retrieves only witnesses; witness rate: no better than the mean)."""
    bags, labels, witness = test
    logits, on_witnesses = [], []
    for i in range(0, len(bags), batch_size):
        logit, attention = model(bags[i:i + batch_size])
        logits.append(logit)
        if attention is not None:
            on_witnesses.append((attention * witness[i:i + batch_size]).sum(-1))
    logits = torch.cat(logits)
    scores = {"accuracy": ((logits > 0).float() == labels).float().mean().item(),
              "test_loss": F.binary_cross_entropy_with_logits(logits, labels).item()}
    if on_witnesses:
        scores["witness_attention"] = round(torch.cat(on_witnesses)[labels == 1].mean().item(), 4)
    return scores


def show_bag_attention(args, model, test, bags_shown=6, per_cell=4):
    """HopfieldPooling's association over the instances of a few held-out bags, `per_cell` instances
    summed per column; the row label says where the witnesses are."""
    bags, labels, witness = (t[:bags_shown] for t in test)
    with torch.no_grad():
        attention = model(bags)[1].cpu().numpy()
    weights = attention.reshape(len(bags), -1, per_cell).sum(-1)
    rows = [f"{'+' if y else '-'} bag, witnesses at {torch.nonzero(w).flatten().tolist()}"
            for y, w in zip(labels.tolist(), witness.cpu())]
    cols = [str(i * per_cell) if i % 5 == 0 else "" for i in range(weights.shape[1])]
    title = f"HopfieldPooling attention on held-out bags (each column sums {per_cell} instances)"
    print_heatmap(weights, rows, cols, title)
    save_heatmap(args, "attention.png", weights, rows, cols, title)


def run_hopfield_retrieval(args):
    """Store N random +-1 patterns of dimension d, query each probed one with a corrupted copy, count
    exact retrievals (every sign right) for the classical, dense (F = exp) and modern networks.
    No training: the result's `steps` is the number of queries probed over all N, and `solved` says
    that the modern network retrieved >= 99% of them at every N."""
    import hopfield as hf
    d = args.dim or 64
    if not 0 < args.corrupt < 1:
        raise UsageError(f"--corrupt must lie strictly between 0 and 1, got {args.corrupt}")
    if args.max_patterns < 2:
        raise UsageError(f"--max-patterns must be at least 2, got {args.max_patterns}")
    beta = args.beta or 1.0
    rng, start = seed_everything(args.seed), time.time()
    sizes = [2 ** k for k in range(1, int(math.log2(args.max_patterns)) + 1)]
    rows, metrics, probed, example = [], {}, 0, None
    pictured = min(sizes, key=lambda N: abs(N - d))  # the N whose retrievals are drawn
    for N in sizes:
        hits = dict.fromkeys(["classical", "dense", "modern_one_update", "modern"], 0)
        steps, count = [], 0
        for trial in range(math.ceil(args.probes / N)):
            X = torch.tensor(rng.choice([-1.0, 1.0], size=(N, d)), dtype=torch.float32).to(args.device)
            target = X[:min(N, args.probes)]
            query = target.clone()
            if args.query == "mask":  # the last bits are unknown: 0, the midpoint of -1 and +1
                query[:, d - round(args.corrupt * d):] = 0
            else:
                flip = torch.tensor(rng.random(tuple(query.shape)) < args.corrupt).to(args.device)
                query[flip] = -query[flip]
            retrieved = {"classical": hf.classical_retrieve(query, hf.classical_weights(X)),
                         "dense": hf.dense_retrieve(query, X)}
            retrieved["modern_one_update"] = torch.sign(hf.update(query, X, beta))
            modern, modern_steps = hf.retrieve(query, X, beta)
            retrieved["modern"] = torch.sign(modern)
            for name, out in retrieved.items():
                hits[name] += (out == target).all(-1).sum().item()
            steps.append(modern_steps)
            count += len(target)
            if N == pictured and trial == 0:
                example = [t[:4].cpu() for t in (target, query, retrieved["classical"], modern)]
        probed += count
        steps = torch.cat(steps).float().cpu()
        accuracy = {name: round(hit / count, 4) for name, hit in hits.items()}
        for name, value in accuracy.items():
            if value >= 0.99:
                metrics[f"capacity_{name}"] = N
        rows.append([N, f"{N / d:.2f}", count] + [f"{accuracy[name]:.2f}" for name in hits]
                    + [f"{steps.mean():.2f} ({int(steps.max())})"])
        metrics[f"N={N}"] = dict(accuracy, modern_steps_mean=round(steps.mean().item(), 3),
                                 modern_steps_max=int(steps.max()))
    print(f"d = {d}, beta = {beta}, queries: {args.query} {args.corrupt:.0%} of the bits; exact retrieval "
          f"(every sign right); 0.14 d = {0.14 * d:.1f}; capacity_* below: largest N with >= 99%")
    print_table(["N", "N / d", "queries", "classical", "dense (exp)", "modern, 1 update", "modern",
                 "modern steps mean (max)"],
                rows)
    show_retrievals(args, example, d, pictured)
    solved = all(metrics[f"N={N}"]["modern"] >= 0.99 for N in sizes)
    run = {"steps": probed, "seconds": round(time.time() - start, 2), "solved": solved, "metrics": metrics}
    return [result_line(args, "hopfield", "retrieval", "classical-dense-modern", run)]


def show_retrievals(args, example, d, N):
    """Each probed pattern as a picture: stored, query, classical and modern retrievals."""
    side = max(s for s in range(1, int(math.sqrt(d)) + 1) if d % s == 0)
    names = ["stored", "query", "classical", "modern"]
    for i in range(min(2, len(example[0]))):
        print_heatmap([(row[i].numpy() + 1) / 2 for row in example], names, [""] * d,
                      f"pattern {i} of N = {N} stored, d = {d} (blank: -1, dark: +1)")

    def draw(plt):
        for i in range(len(example[0])):
            for j, (name, row) in enumerate(zip(names, example)):
                ax = plt.subplot(len(example[0]), len(names), i * len(names) + j + 1)
                ax.imshow(row[i].reshape(side, d // side).numpy(), cmap="Greys", vmin=-1, vmax=1)
                ax.set_xticks([]), ax.set_yticks([])
                if i == 0:
                    ax.set_title(name)
        plt.suptitle(f"N = {N} patterns of d = {d} bits (white: -1, black: +1, grey: 0 = masked)")
    save_png(args, "retrievals.png", draw)

# --- Golovneva et al. 2024: cope.py -----------------------------------

# The paper's test error (%) where it has a number for our setting: Table 3, counting, 3 variables
# (in distribution: its test programs have the training lengths). RoPE is not in Table 3.
COPE_PAPER_ERROR = {("counting", 3, "abs"): 67.6, ("counting", 3, "rel"): 17.8, ("counting", 3, "cope"): 1.2,
                    ("counting", 1, "abs"): 5.3, ("counting", 1, "rel"): 1.1, ("counting", 1, "cope"): 0.0,
                    ("counting", 5, "abs"): 71.5, ("counting", 5, "rel"): 22.4, ("counting", 5, "cope"): 7.4}


def cope_task_sets(args):
    """The training task and the held-out sets {name: task} (all from TEST_SEED) of --task."""
    try:
        if args.task == "counting":
            if args.max_statements < 3 or args.ood_statements <= args.max_statements:
                raise UsageError(f"need 3 <= --max-statements < --ood-statements, got "
                                 f"{args.max_statements} and {args.ood_statements}")
            train_task = tasks.CountingTask(args.vars, 3, args.max_statements)
            return train_task, {"": train_task, "ood": tasks.CountingTask(
                args.vars, args.max_statements + 1, args.ood_statements)}
        if args.task == "flipflop":
            make = lambda p: tasks.FlipFlop(args.length, p)
            return make(args.p_ignore), {"": make(args.p_ignore), "dense": make(0.1), "sparse": make(0.98)}
        make = lambda blanks: tasks.SelectiveCopy(args.tokens, blanks)
        return make(args.blanks), {"": make(args.blanks), "dense": make(args.blanks // 2),
                                   "sparse": make(args.blanks * 2)}
    except ValueError as error:
        raise UsageError(error)


def cope_file_samples(task, path):
    try:
        examples = tasks.read_counting_jsonl(path)
        return [task.encode(example) for example in examples]
    except ValueError as error:
        raise UsageError(f"--data/--eval-data {path}: {error}")


def cope_errors(model, samples, device, batch_size=250):
    """Fraction of target tokens predicted wrong, and of sequences with any target wrong."""
    wrong_tokens = targets_seen = wrong_sequences = 0
    for start in range(0, len(samples), batch_size):
        inputs, targets = (t.to(device) for t in tasks.collate_targets(samples[start:start + batch_size]))
        mask = targets != -100
        wrong = (model(inputs).argmax(-1) != targets) & mask
        wrong_tokens += wrong.sum().item()
        targets_seen += mask.sum().item()
        wrong_sequences += wrong.any(-1).sum().item()
    return wrong_tokens / targets_seen, wrong_sequences / len(samples)


def cope_train_one(args, pos, seed, train_task, test_sets, train_samples, label):
    """Train one model (one --pos, one seed) and return (run, metrics, model)."""
    import cope
    rng = seed_everything(seed)
    block_size = max([train_task.max_tokens()] + [len(ids) for samples in test_sets.values() for ids, _ in samples]
                     + [len(ids) for ids, _ in train_samples or []])
    try:
        config = cope.CoPEConfig(vocab_size=train_task.vocab_size, block_size=block_size, n_layer=args.layers,
                                 n_head=args.heads, d_model=args.d_model, d_ff=4 * args.d_model,
                                 npos_max=args.npos_max, pos=pos)
    except ValueError as error:
        raise UsageError(error)
    model = cope.CoPETransformer(config).to(args.device)

    def next_batch():
        if train_samples:
            chosen = [train_samples[i] for i in rng.integers(len(train_samples), size=args.batch_size)]
        else:
            chosen = [train_task.sample(rng) for _ in range(args.batch_size)]
        return [t.to(args.device) for t in tasks.collate_targets(chosen)]

    def loss_fn(model, batch):
        inputs, targets = batch
        return F.cross_entropy(model(inputs).flatten(0, 1), targets.flatten(), ignore_index=-100)

    def evaluate(model):
        metrics = {}
        for name, samples in test_sets.items():
            token_error, sequence_error = cope_errors(model, samples, args.device)
            metrics["error" + (f"_{name}" if name else "")] = token_error
            if args.task == "selective-copy":
                metrics["seq_error" + (f"_{name}" if name else "")] = sequence_error
        return metrics

    lr_at = lambda step: warmup_cosine(step, args.lr, max(1, args.steps // 20), args.steps)
    no_early_stop = args.compare or args.target < 0   # --compare: equal steps for every variant
    cpu_start = time.process_time()   # CPU time of this process: less skewed by a busy machine
    run = train(model, args, next_batch, loss_fn, evaluate,
                solved=lambda m: not no_early_stop and m["error"] <= args.target,
                optimizer=torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0),
                lr_at=lr_at, label=label)
    losses = run["losses"]
    metrics = dict(run["metrics"], parameters=count_parameters(model), ms_per_step=round(
        1000 * run["seconds"] / run["steps"], 1), cpu_ms_per_step=round(
        1000 * (time.process_time() - cpu_start) / run["steps"], 1), first_loss=round(float(np.mean(losses[:10])), 4),
        final_loss=round(float(np.mean(losses[-10:])), 4))
    return run, metrics, model


def cope_counted_increments(words):
    """Counting: 1 on the `++;` of the asked variable (the tokens a counting head should open on)."""
    asked = words[-1]
    return np.array([float(w == "++;" and n > 0 and words[n - 1] == asked) for n, w in enumerate(words)])


def show_cope_picture(args, task, model, samples, title_set):
    """For one held-out sequence: the gates of every head seen from the query that predicts the first
    answer (CoPE; for the baselines, the attention weights), and the keys the best head opens on.
    Counting: the shortest program whose answer is >= 2 and where another variable is incremented
    too, and the best head is the one whose gates follow the asked variable's increments most closely;
    other tasks: the first sequence, and the head whose gates vary most."""
    def telling(ids):
        words = task.words(ids)
        increments = {words[n - 1] for n, w in enumerate(words) if w == "++;"}
        return words[-1] not in ("0", "1") and len(increments - {words[-2]}) > 0
    candidates = [s for s in samples if args.task != "counting" or telling(s[0])] or samples
    ids, is_target = min(candidates, key=lambda s: len(s[0])) if args.task == "counting" else candidates[0]
    query = is_target.index(True) - 1            # this position predicts the first answer token
    model.eval()
    model.record(True)
    with torch.no_grad():
        model(torch.tensor([ids[:query + 1]], device=args.device))
    model.record(False)
    kind = "gates" if model.config.pos == "cope" else "attention"
    maps = model.gates() if kind == "gates" else torch.stack([b.attn.last_attention for b in model.blocks])
    rows = maps[:, 0, :, query, :].flatten(0, 1).cpu().numpy()   # [layers * heads, keys]
    labels = [f"L{layer + 1}H{head + 1}" for layer in range(maps.shape[0]) for head in range(maps.shape[2])]
    words = task.words(ids[:query + 1])
    if args.task == "counting":
        relevant = cope_counted_increments(words)
        score = [np.corrcoef(row, relevant)[0, 1] if row.std() > 1e-6 and relevant.std() > 0 else 0.0
                 for row in rows]
        why = "follows the asked variable's increments best, r = {:.2f}"
    else:
        score, why = rows.std(axis=1), "varies most, std {:.2f}"
    best = int(np.argmax(score))
    shown = [n for n in range(len(words)) if rows[best, n] > 0.5] if kind == "gates" else \
        sorted(np.argsort(-rows[best])[:8])
    answer = task.words([ids[query + 1]])[0]
    print(f"{kind} of every head on one {title_set} sequence ({len(words)} tokens, answer {answer}), "
          f"seen from its last position; head {labels[best]} {why.format(score[best])}, "
          f"{'opens (gate > 0.5) on' if kind == 'gates' else 'attends most to'}:")
    print("  " + (" ".join(f"{n}:{words[n]}" for n in shown[:30]) or "(no key)")
          + (f" ... ({len(shown)} keys in all)" if len(shown) > 30 else ""))
    title = f"{model.config.pos} {kind} seen from the last token ({title_set} sequence, answer {answer})"
    print_heatmap(rows, labels, words, title)
    save_heatmap(args, f"{kind}.png", rows, labels, words, title)


def run_cope(args):
    """Train CoPE (or --pos) on --task; --compare trains CoPE, absolute PE and RoPE at equal size and
    equal steps over --seeds and prints the table beside the paper's numbers."""
    if getattr(args, "steps", None) is None:
        args.steps = 800 if args.compare else 1500
    if (args.data or args.eval_data) and args.task != "counting":
        raise UsageError("--data and --eval-data hold counting programs: use them with --task counting")
    train_task, test_tasks = cope_task_sets(args)
    test_rng = np.random.default_rng(TEST_SEED)
    test_sets = {name: [task.sample(test_rng) for _ in range(args.test_size)] for name, task in test_tasks.items()}
    train_samples = cope_file_samples(train_task, args.data) if args.data else None
    if args.eval_data:
        test_sets["file"] = cope_file_samples(train_task, args.eval_data)
    variants = ["cope", "abs", "rope"] if args.compare else [args.pos]
    seeds = args.seeds or (3 if args.compare else 1)
    print(f"task {args.task}: " + ", ".join(f"{name or 'in distribution'} {len(s)} held-out sequences of "
                                              f"{min(map(len, (x for x, _ in s)))}-{max(map(len, (x for x, _ in s)))} tokens"
                                              for name, s in test_sets.items()))
    finished, curves = [], {}
    for pos in variants:
        runs = []
        for n in range(seeds):
            label = pos if seeds == 1 else f"{pos} seed {args.seed + n}"
            run, metrics, model = cope_train_one(args, pos, args.seed + n, train_task, test_sets, train_samples, label)
            if n == 0:
                print(f"{pos}: {metrics['parameters']:,} parameters, device {args.device}")
                show_cope_picture(args, train_task, model, test_sets[list(test_tasks)[-1]],
                                  "longer (OOD)" if args.task == "counting" else "sparse (OOD)")
            runs.append((run, metrics))
            curves[label] = run["losses"]
        errors = [k for k in runs[0][1] if "error" in k]
        metrics = {k: float(np.mean([m[k] for _, m in runs])) for k in errors}
        metrics.update({k: runs[0][1][k] for k in ("parameters",)}, **{k: round(float(np.mean(
            [m[k] for _, m in runs])), 1) for k in ("ms_per_step", "cpu_ms_per_step")}, first_loss=runs[0][1]["first_loss"],
            final_loss=runs[0][1]["final_loss"], seeds=[args.seed + n for n in range(seeds)],
            per_seed={k: [round(m[k], 4) for _, m in runs] for k in errors})
        run = {"steps": max(r["steps"] for r, _ in runs), "seconds": round(sum(r["seconds"] for r, _ in runs), 2),
               "solved": all(r["solved"] for r, _ in runs)}
        finished.append((pos, run, metrics, model))
    save_loss_curves(args, curves)
    results = [result_line(args, "cope", args.task, *done) for done in finished]  # the last lines
    if args.compare or seeds > 1:
        print_cope_table(args, results, seeds)
    return results


def print_cope_table(args, results, seeds):
    errors = [k for k in results[0]["metrics"]["per_seed"] if not k.startswith("seq_")]
    names = {"error": "error in distribution", "error_ood": "error, longer programs (OOD)",
             "error_dense": "error, dense (OOD)", "error_sparse": "error, sparse (OOD)", "error_file": "error, --eval-data"}
    rows = []
    for r in results:
        paper = COPE_PAPER_ERROR.get((args.task, args.vars, r["variant"])) if not args.data else None
        rows.append([args.task, r["variant"]] + [mean_spread(r["metrics"]["per_seed"][k]) for k in errors]
                    + [r["metrics"]["parameters"], r["steps"], r["metrics"]["ms_per_step"],
                       r["metrics"]["cpu_ms_per_step"], r["seconds"],
                       "—" if paper is None else f"{paper / 100:.3f}"])
    paper = ("paper: Table 3 test error (4 layers, width 256, programs of 3-512 statements; its test set "
             "is in distribution)") if args.task == "counting" else "paper: numbers of Table 2 not quoted here"
    print(f"\nmean ± std over {seeds} seed(s); errors are fractions of answers wrong; {paper}")
    print_table(["task", "position encoding"] + [names.get(k, k) for k in errors]
                + ["parameters", "steps", "ms/step", "CPU ms/step", "seconds", "paper error"], rows)

# --- Golovneva et al. 2025: mta.py ------------------------------------

# The paper's toy-task numbers (section 4.1; 52 blocks, L = 2, 4 layers x 256, 100k steps; seeds
# 42 / 43 / 44; sequence error in %, from the official toy-task README, H100).
MTA_PAPER = {"standard": ([77.7, 75.3, 1.9], 51.6), "mta": ([0.0, 0.0, 0.2], 0.1)}


def mta_data(args):
    """-> (training task, training examples or None, test examples) from the generator or --data
    / --test-data files (authors' JSON lines); the blocks and L of a file override the flags."""
    import tasks as t
    files = {}
    for flag in ("data", "test_data"):
        if getattr(args, flag):
            try:
                files[flag] = t.read_letter_blocks(getattr(args, flag))
            except ValueError as error:
                raise UsageError(error)
    for examples in files.values():  # the shape of the first file sets the generator's
        src = examples[0][0]
        args.blocks, args.query_letters = src.count(".") + 1, len(src) - src.index("#") - 1
        args.block_length = len(examples[0][1])
        break
    try:
        task = t.LetterBlocks(args.blocks, args.query_letters, args.block_length)
    except ValueError as error:
        raise UsageError(error)
    test = files.get("test_data") or task.examples(args.test_size, np.random.default_rng(TEST_SEED))
    if "data" in files and len(files["data"][0][1]) != len(test[0][1]):
        raise UsageError("--data and --test-data targets differ in length")
    return task, files.get("data"), test


def mta_errors(model, examples, device, batch_size=250):
    """Teacher-forced errors on the target block: sequence (any letter wrong, which equals greedy
    decoding's), token, first letter (the lookup) and the other letters (the copy)."""
    wrong = []
    for i in range(0, len(examples), batch_size):
        tokens, positions, targets = tasks.LetterBlocks.collate(examples[i:i + batch_size])
        logits = model(tokens.to(device))
        predicted = logits.gather(1, positions.to(device)[..., None].expand(-1, -1, logits.size(-1)))
        wrong.append((predicted.argmax(-1) != targets.to(device)).cpu())
    wrong = torch.cat(wrong).float()
    return {"sequence_error": wrong.amax(1).mean().item(), "token_error": wrong.mean().item(),
            "first_letter_error": wrong[:, 0].mean().item(), "copy_error": wrong[:, 1:].mean().item()}


def mta_config(args, use_mta, max_len):
    import mta
    try:
        return mta.MTAConfig(vocab_size=tasks.LetterBlocks.vocab_size, max_len=max_len,
                             n_layers=args.layers, d_model=args.d_model, n_heads=args.heads,
                             mta=use_mta, kq_conv=args.kq_conv, c_q=args.c_q, c_k=args.c_k,
                             head_mix=args.head_mix, c_h=args.c_h, head_norm=args.head_norm)
    except ValueError as error:
        raise UsageError(error)


def mta_train_one(args, use_mta, seed, task, train_examples, test, label):
    import mta
    rng = seed_everything(seed)
    max_len = max(len(s) + len(t) for s, t in test + (train_examples or [])) + 1
    model = mta.MTATransformer(mta_config(args, use_mta, max_len)).to(args.device)
    print(f"[{label}] {count_parameters(model):,} parameters, {args.blocks} blocks, L = "
          f"{args.query_letters}, {len(test)} test sequences, device {args.device}", flush=True)

    def next_batch():
        if train_examples is None:
            return task.batch(args.batch_size, rng)
        return task.collate([train_examples[i] for i in rng.integers(len(train_examples), size=args.batch_size)])

    def loss_fn(model, batch):  # the loss is on the target letters only, as in the paper
        tokens, positions, targets = (x.to(args.device) for x in batch)
        logits = model(tokens)
        logits = logits.gather(1, positions[..., None].expand(-1, -1, logits.size(-1)))
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten())

    # paper: 1e-4 constant after 1000 warmup steps; here warmup_cosine, for a short CPU budget
    lr_at = lambda step: warmup_cosine(step, args.lr, args.warmup, args.steps)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.98), weight_decay=0.0)
    run = train(model, args, next_batch, loss_fn, lambda m: mta_errors(m, test, args.device),
                solved=lambda metrics: metrics["sequence_error"] <= args.target_error,
                optimizer=optimizer, lr_at=lr_at, label=label)
    return model, run


def show_mta_attention(args, model, test):
    """The answering head before / after the key-query convolution on one test sequence: rows are
    the positions that predict the 5 target letters, columns the sequence. The head shown is the
    one (over layers and heads) putting most weight on the target block at the first of them."""
    src, tgt = test[0]
    blocks = src.split("#")[0].split(".")
    start = sum(len(b) + 1 for b in blocks[:blocks.index(tgt)]) if tgt in blocks else 0
    for block in model.blocks:
        block.attn.keep_maps = True
    model.eval()
    with torch.no_grad():
        model(torch.tensor([tasks.LetterBlocks.encode(src + tgt[:-1])], device=args.device))
    first = len(src) - 1
    rows = list(range(first, first + len(tgt)))
    best = max(((layer, head) for layer, block in enumerate(model.blocks) if block.attn.maps_after is not None
                for head in range(block.attn.n_heads)),
               key=lambda lh: model.blocks[lh[0]].attn.maps_after[0, lh[1], first, start:start + len(tgt)].sum().item())
    attn = model.blocks[best[0]].attn
    for block in model.blocks:
        block.attn.keep_maps = False
    text = src + tgt[:-1]
    cols = list(range(len(text)))
    if len(cols) > 80:  # keep the terminal picture narrow: the target block's neighbourhood and the query
        cols = [c for c in cols if start - 30 <= c < start + 36 or c >= src.index("#")]
    row_labels = [f"{text[r]}->{tgt[n]}" for n, r in enumerate(rows)]
    col_labels = [text[c] for c in cols]
    for name, maps in (("before", attn.maps_before), ("after", attn.maps_after)):
        matrix = maps[0, best[1]][rows][:, cols].cpu().numpy()
        title = (f"layer {best[0] + 1} head {best[1] + 1} attention {name} the key-query convolution "
                 f"(query {src[src.index('#') + 1:]!r}, target {tgt!r})")
        print_heatmap(matrix, row_labels, col_labels, title)
        save_heatmap(args, f"attention-{name}-conv.png", matrix, row_labels, col_labels, title)


def run_mta(args):
    """The letter-block toy task (section 4.1) with MTA; --compare adds standard attention at equal
    size and steps, each over --seeds, and prints the table beside the paper's numbers."""
    task, train_examples, test = mta_data(args)
    seeds = args.seeds or (3 if args.compare else 1)
    variants = ["mta"] + (["standard"] if args.compare else [])  # MTA first: its picture comes early
    if args.baseline:
        variants = ["standard"]
    finished, curves = [], {}
    for variant in variants:
        runs = []
        for n in range(seeds):
            label = variant if seeds == 1 else f"{variant} seed {args.seed + n}"
            model, run = mta_train_one(args, variant == "mta", args.seed + n, task, train_examples, test, label)
            runs.append(run)
            curves[label] = run["losses"]
            if n == 0 and variant == "mta":
                show_mta_attention(args, model, test)
        per_seed = {k: [round(r["metrics"][k], 4) for r in runs] for k in runs[0]["metrics"]}
        metrics = dict({k: float(np.mean(v)) for k, v in per_seed.items()},
                       per_seed=per_seed, seeds=[args.seed + n for n in range(seeds)],
                       blocks=args.blocks, query_letters=args.query_letters,
                       parameters=count_parameters(model), final_loss=round(runs[0]["losses"][-1], 4))
        summary = {"steps": max(r["steps"] for r in runs), "seconds": round(sum(r["seconds"] for r in runs), 2),
                   "solved": all(r["solved"] for r in runs), "metrics": metrics}
        finished.append((variant, summary, model, runs))
    save_loss_curves(args, curves)
    results = []
    for variant, summary, model, runs in finished:  # the result lines come last (then the table)
        results.append(result_line(args, "mta", "letter-blocks", variant, summary, model=model))
        results[-1]["runs"] = runs
    if args.compare or seeds > 1:
        print_mta_table(args, sorted(results, key=lambda r: r["variant"] == "mta"))
    return results


def print_mta_table(args, results):
    pct = lambda values: " / ".join(f"{100 * v:.1f}" for v in values)
    rows = []
    for r in results:
        m = r["metrics"]
        steps = "/".join(str(run["steps"]) for run in r["runs"])
        rows.append([f"**{'MTA' if r['variant'] == 'mta' else 'standard'}** (ours)", m["blocks"], m["query_letters"],
                     pct(m["per_seed"]["sequence_error"]), f"{100 * m['sequence_error']:.1f}",
                     pct(m["per_seed"]["first_letter_error"]), pct(m["per_seed"]["copy_error"]),
                     m["parameters"], steps, f"{r['seconds']:.0f}"])
    for variant, (per_seed, mean) in MTA_PAPER.items():
        rows.append([f"{'MTA' if variant == 'mta' else 'standard'} (paper)", 52, 2, pct(np.array(per_seed) / 100),
                     f"{mean:.1f}", "-", "-", "4 layers x 256", "100000", "-"])
    print(f"\nsequence error % (any of the {args.block_length} letters wrong) per seed "
          f"({', '.join(str(s) for s in results[0]['metrics']['seeds'])}) and mean; first letter = the "
          f"lookup, other letters = the copy (token error %); seconds = all seeds together")
    print_table(["model", "blocks", "L", "sequence error % by seed", "mean %", "first-letter error %",
                 "other-letter error %", "parameters", "steps", "seconds"], rows)



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


def add_experiment(subparsers, name, run, summary, steps, batch_size, lr, eval_every,
                   lr_help="(peak) learning rate"):
    """One sub-command with the flags every experiment shares; returns it for its own flags.
    steps and eval_every may be text that describes a default the experiment works out itself
    (e.g. "one epoch"): the flag is then absent from args unless given."""
    p = subparsers.add_parser(name, help=summary, description=summary,
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)

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
    p.set_defaults(run=run)
    return p


def build_parser():
    parser = Parser(description="Train one paper's model on its tiny synthetic task.",
                    epilog="Run 'python train.py NAME --help' for the flags of one experiment. Data "
                           "parallel: 'torchrun --nproc_per_node=N train.py NAME ...' (--batch-size is per rank).")
    subparsers = parser.add_subparsers(dest="name", metavar="NAME", required=True,
                                       parser_class=Parser)
    p = add_experiment(subparsers, "bahdanau", run_bahdanau,
                       "Bahdanau et al. 2014: RNNsearch (additive attention) on toy translation",
                       steps=3000, batch_size=64, lr=3e-3, eval_every=100)
    add_translation_args(p, max_len=40)
    p.add_argument("--embed-dim", type=positive_int, default=32, help="word embedding m (paper: 620)")
    p.add_argument("--hidden", type=positive_int, default=64, help="GRU state n (paper: 1000)")
    p.add_argument("--align-dim", type=positive_int, default=64, help="alignment MLP n' (paper: 1000)")
    p.add_argument("--maxout", type=positive_int, default=32, help="maxout units l (paper: 500)")
    p.add_argument("--clip", type=positive_float, default=1.0, help="gradient-norm clip (paper: 1)")
    p.add_argument("--paper-init", action="store_true", help="Appendix B.1 initialisation")
    p = add_experiment(subparsers, "memn2n", run_memn2n,
                       "Sukhbaatar et al. 2015: End-To-End Memory Network on bAbI-style stories",
                       steps="--epochs epochs", batch_size=32, lr=0.01, eval_every="one epoch",
                       lr_help="SGD learning rate for the loss summed over a batch "
                               "(paper: 0.01; 0.005 during linear start)")
    p.add_argument("--task", type=int, choices=[1, 2, 3], default=2,
                   help="bAbI task: 1 single, 2 two, 3 three supporting facts")
    p.add_argument("--hops", type=positive_int, default=3, help="memory hops K (paper: 3)")
    p.add_argument("--tying", choices=["adjacent", "layerwise"], default="adjacent",
                   help="weight tying across hops (section 2.2)")
    p.add_argument("--encoding", choices=["pe", "bow"], default="pe",
                   help="sentence representation: position encoding or bag of words (section 4.1)")
    p.add_argument("--no-linear-start", dest="linear_start", action="store_false",
                   help="turn linear start off: softmax in every hop from the start "
                        "(the default below: LS on)")
    p.add_argument("--random-noise", type=float, default=0.1,
                   help="RN: blank time slots, as a share of a story's sentences, inserted at training time (0: off)")
    p.add_argument("--dim", type=positive_int, default=20, help="embedding size d (paper: 20)")
    p.add_argument("--memory-size", type=positive_int, default=50, help="most recent sentences kept (paper: 50)")
    p.add_argument("--train-size", type=positive_int,
                   help="generated training questions, 10%% held out for validation (bAbI: 1000 or 10000; "
                        "default 10000, 1000 with --compare as the paper's Table 1)")
    p.add_argument("--test-size", type=positive_int, default=1000, help="generated test questions (bAbI: 1000)")
    p.add_argument("--epochs", type=positive_int,
                   help="passes over the training questions (paper: 100; default 40, 100 with --compare)")
    p.add_argument("--target-error", type=float,
                   help="validation error at which training stops early, once linear start is over "
                        "(default 0.03; 0 with --compare)")
    p.add_argument("--data", metavar="DIR",
                   help="train and test on the real bAbI files qaN_*_train.txt / qaN_*_test.txt in DIR")
    p = add_experiment(subparsers, "transformer", run_transformer,
                       "Vaswani et al. 2017: encoder-decoder Transformer on toy translation",
                       steps=3000, batch_size=32, lr=3e-3, eval_every=100)
    add_translation_args(p, max_len=40)
    p.add_argument("--d-model", type=positive_int, default=64, help="model width (paper: 512)")
    p.add_argument("--layers", type=positive_int, default=2, help="layers in each stack (paper: 6)")
    p.add_argument("--heads", type=positive_int, default=4, help="attention heads (paper: 8)")
    p.add_argument("--d-ff", type=positive_int, default=256, help="feed-forward width (paper: 2048)")
    p.add_argument("--dropout", type=float, default=0.0, help="dropout (paper: 0.1)")
    p.add_argument("--label-smoothing", type=float, default=0.1, help="epsilon_ls (paper: 0.1)")
    p.add_argument("--warmup", type=positive_int, default=100, help="warmup steps of eq. (3) (paper: 4000)")
    p = add_experiment(subparsers, "hopfield", run_hopfield,
                       "Ramsauer et al. 2020: Hopfield pooling on bags with rare witnesses (--task mil), "
                       "or the capacity of classical vs modern Hopfield networks (--task retrieval)",
                       steps=2000, batch_size=32, lr=1e-3, eval_every=20)
    p.add_argument("--task", choices=["mil", "retrieval"], default="mil",
                   help="mil: train HopfieldPooling on bags; retrieval: no training, capacity table")
    p.add_argument("--dim", type=positive_int, help="instance width (mil, default 16) or pattern "
                   "dimension d (retrieval, default 64)")
    p.add_argument("--beta", type=positive_float, help="inverse temperature; default 1/sqrt(d_k) in the "
                   "MIL layer (section 3), 1 for retrieval")
    p.add_argument("--bag-size", type=positive_int, default=200, help="mil: instances per bag")
    p.add_argument("--witnesses", type=positive_int, default=2, help="mil: witnesses in a positive bag")
    p.add_argument("--noise", type=float, default=0.5, help="mil: spread (> 0) of the witnesses around the motif")
    p.add_argument("--d-model", type=positive_int, default=32, help="mil: model width")
    p.add_argument("--heads", type=positive_int, default=1, help="mil: Hopfield heads (library default 1)")
    p.add_argument("--update-steps", type=positive_int, default=1, help="mil: Hopfield updates per pooling")
    p.add_argument("--test-size", type=positive_int, default=1000, help="mil: held-out bags")
    p.add_argument("--target", type=float, default=0.95, help="mil: held-out accuracy that counts as solved")
    p.add_argument("--max-patterns", type=positive_int, default=16384,
                   help="retrieval: largest N (the table doubles N from 2)")
    p.add_argument("--probes", type=positive_int, default=100, help="retrieval: queries per N")
    p.add_argument("--query", choices=["mask", "flip"], default="mask",
                   help="retrieval: mask the last part of each pattern (set to 0) or flip random bits")
    p.add_argument("--corrupt", type=float, default=0.5, help="retrieval: fraction of bits masked or flipped")
    p = add_experiment(subparsers, "cope", run_cope,
                       "Golovneva et al. 2024: contextual position encoding (CoPE) on counting programs",
                       steps="1500; 800 with --compare", batch_size=32, lr=2e-3, eval_every=250)
    p.add_argument("--task", choices=["counting", "flipflop", "selective-copy"], default="counting",
                   help="counting programs (section 4.3), flip-flop (4.1) or selective copy (4.2)")
    p.add_argument("--pos", choices=["cope", "abs", "rel", "rope", "none"], default="cope",
                   help="position encoding (without --compare)")
    p.add_argument("--seeds", type=positive_int, default=None,
                   help="seeds per variant, from --seed on (None: 3 with --compare, else 1)")
    p.add_argument("--d-model", type=positive_int, default=64, help="model width (paper: 256)")
    p.add_argument("--layers", type=positive_int, default=2, help="layers (paper: 4)")
    p.add_argument("--heads", type=positive_int, default=4, help="attention heads (paper: 4)")
    p.add_argument("--npos-max", type=positive_int, default=64,
                   help="CoPE / relative position table size; positions are clamped to npos_max - 1")
    p.add_argument("--test-size", type=positive_int, default=500, help="sequences in each held-out set")
    p.add_argument("--target", type=float, default=0.01,
                   help="in-distribution error that counts as solved (negative: never stop early)")
    p.add_argument("--vars", type=positive_int, default=3, help="counting: variables (paper: 1, 3, 5)")
    p.add_argument("--max-statements", type=positive_int, default=32,
                   help="counting: training programs have 3..this many statements (paper: 512)")
    p.add_argument("--ood-statements", type=positive_int, default=64,
                   help="counting: the OOD test programs have max-statements+1..this many statements")
    p.add_argument("--data", metavar="FILE.jsonl",
                   help="counting: train on these programs (the official generator's JSON lines)")
    p.add_argument("--eval-data", metavar="FILE.jsonl",
                   help="counting: also report the error on these programs")
    p.add_argument("--length", type=positive_int, default=32, help="flip-flop: instructions per string")
    p.add_argument("--p-ignore", type=float, default=0.8,
                   help="flip-flop: training ignore probability (tests: dense 0.1, sparse 0.98)")
    p.add_argument("--tokens", type=positive_int, default=8, help="selective copy: tokens to copy")
    p.add_argument("--blanks", type=positive_int, default=16,
                   help="selective copy: training blanks (tests: dense half, sparse twice as many)")
    p = add_experiment(subparsers, "mta", run_mta,
                       "Golovneva et al. 2025: Multi-Token Attention on the letter-block toy task",
                       steps=2500, batch_size=64, lr=3e-3, eval_every=100)
    p.add_argument("--blocks", type=positive_int, default=4, help="blocks of letters per sequence (paper: 52)")
    p.add_argument("--query-letters", type=positive_int, default=2, help="L, letters in the query (paper: 2)")
    p.add_argument("--block-length", type=positive_int, default=5, help="letters per block (paper: 5)")
    p.add_argument("--test-size", type=positive_int, default=1000, help="held-out sequences (paper: 1000)")
    p.add_argument("--data", metavar="FILE.jsonl",
                   help="train on these examples (authors' format, one {\"src\", \"tgt\"} a line)")
    p.add_argument("--test-data", metavar="FILE.jsonl", help="evaluate on these examples (same format)")
    p.add_argument("--seeds", type=positive_int, help="seeds per model (default: 3 with --compare, else 1)")
    p.add_argument("--baseline", action="store_true", help="train only standard attention (the --compare baseline)")
    p.add_argument("--d-model", type=positive_int, default=64, help="model width (paper: 256)")
    p.add_argument("--layers", type=positive_int, default=2, help="layers (paper: 4)")
    p.add_argument("--heads", type=positive_int, default=2, help="attention heads (paper: 2)")
    p.add_argument("--kq-conv", choices=["pre", "post", ""], default="pre",
                   help="key-query convolution before or after the softmax ('' = off) (paper toy: pre)")
    p.add_argument("--c-q", type=positive_int, default=2, help="query kernel size (paper toy: 2)")
    p.add_argument("--c-k", type=positive_int, default=9, help="key kernel size (paper toy: 9)")
    p.add_argument("--head-mix", choices=["pre", "post", ""], default="",
                   help="head mixing before or after the softmax ('' = off) (paper toy: off)")
    p.add_argument("--c-h", type=positive_int, default=2, help="heads per mixing group")
    p.add_argument("--head-norm", choices=["depth", "gate", ""], default="",
                   help="per-head normalisation: RMSNorm with depth scaling, RMSNorm + gate, or off (paper toy: off)")
    p.add_argument("--warmup", type=positive_int, default=100, help="linear warmup steps (paper: 1000)")
    p.add_argument("--target-error", type=float, default=0.01,
                   help="held-out sequence error that counts as solved (early stop)")
    return parser


def main(argv=None):
    try:
        args = build_parser().parse_args(argv)
        args.device = pick_device(args.device)
        join_ranks(args)
        if args.dtype == "auto":
            args.dtype = "bfloat16" if args.device.startswith("cuda") else "float32"
        args.run(args)
    except UsageError as error:
        print(f"train.py: error: {error}", file=sys.stderr)
        return 2
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
