"""Golovneva et al. 2024, Contextual Position Encoding: the experiment behind `python train.py cope`.

A small decoder (cope.py) learns the answers of counting programs (or flip-flop, or selective copy)
and is tested in distribution and out of it: on longer programs, or sparser and denser strings. The
claim: CoPE's positions count what its gates open on, so they carry over to lengths that token
positions never saw. The run shows the gates of every head; --compare trains CoPE, absolute PE and
RoPE at equal size and steps over 3 seeds and prints their errors beside the paper's Table 3.

One variable by default (the first column of Table 3: CoPE 0.0%, absolute PE 5.3%): the model must
count the `x ++;` since the last `x = 0 ;` and ignore every `pass;`. With three (--vars 3) a model of
this size stays near 5% in distribution at CPU scale (2,000-6,000 steps; width 128, 3 layers, 8 heads,
batch 128 or lr 4e-3 with clipping did no better): every error is a program where another variable
is incremented after the asked one's last set, which only about 4% of programs of 3-32 statements are,
too few for a model to learn which increments count before a minute is out.
"""
import time

import numpy as np
import torch
import torch.nn.functional as F

import cope                       # the model: the root file cope.py
import train                      # the shared loop, result line and command line
from experiments import cope_tasks  # the tasks: counting, flip-flop, selective copy, drawn on the device
from experiments import pictures    # terminal and PNG pictures

SUMMARY = "Golovneva et al. 2024: contextual position encoding (CoPE) on counting programs"


# ---- the tasks (section 4: experiments/cope_tasks.py) and the held-out sets ----

def task_sets(args):
    """The training task of --task and its held-out tasks {name: task}: "" in distribution, then
    out of it (longer programs; dense and sparse strings)."""
    try:
        if args.task == "counting":
            if args.ood_statements <= args.max_statements:
                raise train.UsageError(f"need --max-statements {args.max_statements} < --ood-statements")
            train_task = cope_tasks.CountingTask(args.vars, 3, args.max_statements)
            return train_task, {"": train_task, "ood": cope_tasks.CountingTask(
                args.vars, args.max_statements + 1, args.ood_statements)}
        if args.task == "flipflop":
            make = lambda p: cope_tasks.FlipFlop(args.length, p)
            return make(args.p_ignore), {"": make(args.p_ignore), "dense": make(0.1), "sparse": make(0.98)}
        make = lambda blanks: cope_tasks.SelectiveCopy(args.tokens, blanks)
        return make(args.blanks), {"": make(args.blanks), "dense": make(args.blanks // 2),
                                   "sparse": make(args.blanks * 2)}
    except ValueError as error:
        raise train.UsageError(error)


def held_out(ids, is_target, device):
    """A held-out set (ids, is_target) [n, W] -> its batches (inputs, targets) on the device, made once:
    sorted by length and each cut to its longest, so that an evaluation pays for no padding, with
    [B, T, T] attention bounded."""
    lengths = (ids != 0).sum(1)
    order = lengths.argsort(stable=True)
    ids, is_target, lengths = ids[order], is_target[order], lengths[order].tolist()
    batches, start = [], 0
    while start < len(lengths):
        size = max(1, min(250, 2 ** 24 // lengths[min(start + 249, len(lengths) - 1)] ** 2))
        end = min(start + size, len(lengths))
        width = lengths[end - 1]
        inputs, targets = cope_tasks.to_batch(ids[start:end, :width], is_target[start:end, :width])
        batches.append((inputs.to(device), targets.to(device)))
        start = end
    return batches


def errors(model, batches):
    """Fraction of target tokens predicted wrong, and of sequences with any target wrong."""
    counts = []
    for inputs, targets in batches:
        mask = targets != -100
        wrong = (model(inputs).argmax(-1) != targets) & mask
        counts.append(torch.stack([wrong.sum(), mask.sum(), wrong.any(-1).sum()]))
    wrong_tokens, targets_seen, wrong_sequences = torch.stack(counts).sum(0).tolist()   # one read of the device
    return wrong_tokens / targets_seen, wrong_sequences / sum(len(inputs) for inputs, _ in batches)


# ---- training one model ----

def train_one(args, config, seed, steps, train_task, test_sets, train_data, label):
    """Train one model (config.pos, one seed) and return (run, metrics, model)."""
    rng = train.seed_everything(seed)   # the training batches: a torch stream on the device, seeded from rng
    generator = torch.Generator(args.device).manual_seed(int(rng.integers(2 ** 63)))
    model = cope.CoPETransformer(config).to(args.device)

    drawn = [0]   # batches drawn: one a step (--resume and --eval replay them), so the step evaluated

    def next_batch():  # fresh samples every step, or rows of the --data file
        drawn[0] += 1
        if train_data is None:
            return cope_tasks.to_batch(*train_task.draw(args.batch_size, generator, args.device))
        rows = torch.randint(len(train_data[0]), (args.batch_size,), generator=generator, device=args.device)
        return cope_tasks.to_batch(train_data[0][rows], train_data[1][rows])

    def loss_fn(model, batch):  # on the targets only (the answer), as in the paper
        inputs, targets = batch
        return F.cross_entropy(model(inputs).flatten(0, 1), targets.flatten(), ignore_index=-100)

    no_early_stop = args.compare or args.target < 0   # --compare: equal steps for every variant
    solved = lambda metrics: not no_early_stop and metrics["error"] <= args.target

    def evaluate(model):
        # the held-out sets out of distribution (and --eval-data) only when the run stops: they do not
        # decide when it stops, and evaluating them costs a CPU as much as a dozen training steps
        metrics = {}
        for name, batches in test_sets.items():
            if name and not (solved(metrics) or drawn[0] >= steps or args.eval is not None):
                continue
            token_error, sequence_error = errors(model, batches)
            metrics["error" + (f"_{name}" if name else "")] = token_error
            if args.task == "selective-copy":
                metrics["seq_error" + (f"_{name}" if name else "")] = sequence_error
        return metrics

    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0,
                                  fused=args.device.startswith("cuda") or None)   # one kernel a step on a GPU
    lr_at = lambda step: train.warmup_cosine(step, args.lr, max(1, steps // 20), steps)
    cpu_start = time.process_time()   # CPU time of this process: less skewed by a busy machine
    run = train.training_loop(model, optimizer, next_batch, loss_fn, evaluate, solved, steps, args.eval_every,
                              lr_at=lr_at, label=label, **train.settings(args, args.task, config.pos, train_task.vocab))
    losses = run["losses"]
    metrics = dict(run["metrics"], parameters=train.count_parameters(model),
                   ms_per_step=round(1000 * run["seconds"] / run["steps"], 1),
                   cpu_ms_per_step=round(1000 * (time.process_time() - cpu_start) / run["steps"], 1),
                   first_loss=round(float(np.mean(losses[:10])), 4), final_loss=round(float(np.mean(losses[-10:])), 4))
    return run, metrics, model


# ---- the picture: what a head counts ----

def show_gates(args, task, model, samples, title_set):
    """Every head's gates (baselines: attention weights) seen from the position that predicts the first
    answer of one held-out sequence, and the keys the best head opens on. Counting: the shortest program
    with an answer >= 2 and another variable incremented too; the best head follows the asked
    variable's increments most closely. Other tasks: the first sequence, the head that varies most."""
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
        # 1 on the `++;` of the asked variable (words[-1]): the keys a counting head should open on
        relevant = np.array([float(w == "++;" and n > 0 and words[n - 1] == words[-1]) for n, w in enumerate(words)])
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
    pictures.show_heatmap(args, f"{kind}.png", rows, labels, words, title)


# ---- the run and its table ----

def add_flags(p):
    train.add_shared_flags(p, steps="1500; 800 with --compare", batch_size=32, lr=1e-3, eval_every=100)
    p.add_argument("--task", choices=["counting", "flipflop", "selective-copy"], default="counting",
                   help="counting programs (section 4.3), flip-flop (4.1) or selective copy (4.2)")
    p.add_argument("--pos", choices=["cope", "abs", "rel", "rope", "none"], default="cope",
                   help="position encoding (without --compare)")
    p.add_argument("--seeds", type=train.int_in(1, 100), default=None,
                   help="seeds per variant, from --seed on (None: 3 with --compare, else 1)")
    p.add_argument("--d-model", type=train.int_in(1, 4096), default=64, help="model width (paper: 256)")
    p.add_argument("--layers", type=train.int_in(1, 64), default=2, help="layers (paper: 4)")
    p.add_argument("--heads", type=train.int_in(1, 64), default=4, help="attention heads (paper: 4)")
    p.add_argument("--npos-max", type=train.int_in(2, 4096), default=64,
                   help="CoPE / relative position table size; positions are clamped to npos_max - 1")
    p.add_argument("--test-size", type=train.int_in(1, 100000), default=500, help="sequences in each held-out set")
    p.add_argument("--target", type=train.float_in(-1, 1), default=0.01,
                   help="in-distribution error that counts as solved (negative: never stop early)")
    p.add_argument("--vars", type=train.int_in(1, 26), default=1,
                   help="counting: variables (paper: 1, 3, 5; with 3 this model stays near 5%% in distribution "
                        "at CPU scale)")
    p.add_argument("--max-statements", type=train.int_in(3, cope_tasks.MAX_STATEMENTS - 1), default=32,
                   help="counting: training programs have 3..this many statements (paper: 512)")
    p.add_argument("--ood-statements", type=train.int_in(4, cope_tasks.MAX_STATEMENTS), default=64,
                   help="counting: the OOD test programs have max-statements+1..this many statements")
    p.add_argument("--data", metavar="FILE.jsonl",
                   help="counting: train on these programs (the official generator's JSON lines)")
    p.add_argument("--eval-data", metavar="FILE.jsonl",
                   help="counting: also report the error on these programs")
    p.add_argument("--length", type=train.int_in(2, 1024), default=32, help="flip-flop: instructions per string")
    p.add_argument("--p-ignore", type=train.float_in(0, 1), default=0.8,
                   help="flip-flop: training ignore probability (tests: dense 0.1, sparse 0.98)")
    p.add_argument("--tokens", type=train.int_in(1, 256), default=8, help="selective copy: tokens to copy")
    p.add_argument("--blanks", type=train.int_in(1, 1024), default=16,
                   help="selective copy: training blanks (tests: dense half, sparse twice as many)")


def run(args):
    """Train CoPE (or --pos) on --task; --compare trains CoPE, absolute PE and RoPE at equal size and
    equal steps over --seeds and adds the table beside the paper's numbers."""
    steps = getattr(args, "steps", None) or (800 if args.compare else 1500)
    if (args.data or args.eval_data) and args.task != "counting":
        raise train.UsageError("--data and --eval-data hold counting programs: use them with --task counting")
    train_task, test_tasks = task_sets(args)
    test_generator = torch.Generator().manual_seed(train.TEST_SEED)   # on the CPU: the same sets on every device
    drawn = {name: task.draw(args.test_size, test_generator) for name, task in test_tasks.items()}
    train_data = cope_tasks.read_programs(train_task, args.data) if args.data else None
    if args.eval_data:
        drawn["file"] = cope_tasks.read_programs(train_task, args.eval_data)
    lengths = {name: (ids != 0).sum(1) for name, (ids, _) in drawn.items()}
    block_size = max([train_task.max_tokens] + [int(n.max()) for n in lengths.values()]
                     + ([train_data[0].shape[1]] if args.data else []))
    test_sets = {name: held_out(ids, is_target, args.device) for name, (ids, is_target) in drawn.items()}
    if args.data:
        train_data = tuple(t.to(args.device) for t in train_data)
    variants = ["cope", "abs", "rope"] if args.compare else [args.pos]
    try:  # every variant's model, checked before any training starts
        configs = {pos: cope.CoPEConfig(vocab_size=train_task.vocab_size, block_size=block_size, n_layer=args.layers,
                                        n_head=args.heads, d_model=args.d_model, d_ff=4 * args.d_model,
                                        npos_max=args.npos_max, pos=pos) for pos in variants}
    except ValueError as error:
        raise train.UsageError(error)
    seeds = args.seeds or (3 if args.compare else 1)
    print(f"task {args.task}: " + ", ".join(f"{name or 'in distribution'} {len(n)} held-out sequences of "
                                            f"{n.min()}-{n.max()} tokens" for name, n in lengths.items()))
    shown = list(test_tasks)[-1]   # the pictures' set: longer programs, or the sparse strings
    pictured = [(ids[:n], is_target[:n]) for ids, is_target, n in
                zip(*(t.tolist() for t in drawn[shown]), lengths[shown].tolist())]
    results, curves = [], {}
    for pos in variants:
        runs = []
        for n in range(seeds):
            label = pos if seeds == 1 else f"{pos} seed {args.seed + n}"
            one_run, metrics, model = train_one(args, configs[pos], args.seed + n, steps, train_task, test_sets,
                                                train_data, label)
            if n == 0:
                print(f"{pos}: {metrics['parameters']:,} parameters, device {args.device}")
                show_gates(args, train_task, model, pictured,
                           "longer (OOD)" if args.task == "counting" else "sparse (OOD)")
            runs.append((one_run, metrics))
            curves[label] = one_run["losses"]
        # one result line per variant: errors and times averaged over the seeds, the rest from the first
        mean = lambda key: float(np.mean([m[key] for _, m in runs]))
        error_keys = [k for k in runs[0][1] if "error" in k]
        first = runs[0][1]
        metrics = {k: mean(k) for k in error_keys}
        metrics.update(parameters=first["parameters"], ms_per_step=round(mean("ms_per_step"), 1),
                       cpu_ms_per_step=round(mean("cpu_ms_per_step"), 1), first_loss=first["first_loss"],
                       final_loss=first["final_loss"], seeds=[args.seed + n for n in range(seeds)],
                       per_seed={k: [round(m[k], 4) for _, m in runs] for k in error_keys})
        summary = {"steps": max(r["steps"] for r, _ in runs), "seconds": round(sum(r["seconds"] for r, _ in runs), 2),
                   "solved": all(r["solved"] for r, _ in runs)}
        results.append((args.task, pos, summary, metrics, model))   # model: the last seed's
    pictures.save_loss_curves(args, curves)
    return results, ([table(args, results, seeds)] if args.compare or seeds > 1 else [])


# The paper's test error (%) where it has a number for our setting: Table 3, counting, 3 variables
# (in distribution: its test programs have the training lengths). RoPE is not in Table 3.
PAPER_ERROR = {("counting", 3, "abs"): 67.6, ("counting", 3, "rel"): 17.8, ("counting", 3, "cope"): 1.2,
               ("counting", 1, "abs"): 5.3, ("counting", 1, "rel"): 1.1, ("counting", 1, "cope"): 0.0,
               ("counting", 5, "abs"): 71.5, ("counting", 5, "rel"): 22.4, ("counting", 5, "cope"): 7.4}
ERROR_NAMES = {"error": "error in distribution", "error_ood": "error, longer programs (OOD)",
               "error_dense": "error, dense (OOD)", "error_sparse": "error, sparse (OOD)",
               "error_file": "error, --eval-data"}


def table(args, results, seeds):
    """Every variant's errors as mean ± std over the seeds, its cost, and the paper's error."""
    error_keys = [k for k in results[0][3]["per_seed"] if not k.startswith("seq_")]
    rows = []
    for _, pos, summary, metrics, _ in results:
        paper = PAPER_ERROR.get((args.task, args.vars, pos)) if not args.data else None
        spread = [f"{np.mean(metrics['per_seed'][k]):.3f} ± {np.std(metrics['per_seed'][k]):.3f}" for k in error_keys]
        rows.append([args.task, pos] + spread
                    + [metrics["parameters"], summary["steps"], metrics["ms_per_step"],
                       metrics["cpu_ms_per_step"], summary["seconds"],
                       "—" if paper is None else f"{paper / 100:.3f}"])
    paper = ("paper: Table 3 test error (4 layers, width 256, programs of 3-512 statements; its test set "
             "is in distribution)") if args.task == "counting" else "paper: numbers of Table 2 not quoted here"
    return (f"\nmean ± std over {seeds} seed(s); errors are fractions of answers wrong; {paper}",
            ["task", "position encoding"] + [ERROR_NAMES.get(k, k) for k in error_keys]
            + ["parameters", "steps", "ms/step", "CPU ms/step", "seconds", "paper error"], rows)
