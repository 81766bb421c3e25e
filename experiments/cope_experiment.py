"""Golovneva et al. 2024, Contextual Position Encoding: the experiment behind `python train.py cope`.

A small decoder (cope.py) learns the answers of counting programs (or flip-flop, or selective copy)
and is tested in distribution and out of it: on longer programs, or sparser and denser strings. The
claim: CoPE's positions count what its gates open on, so they carry over to lengths that token
positions never saw. The run shows the gates of every head; --compare trains CoPE, absolute PE and
RoPE at equal size and steps over 3 seeds and prints their errors beside the paper's Table 3.
"""
import json
import time

import numpy as np
import torch
import torch.nn.functional as F

import cope                       # the model: the root file cope.py
import train                      # the shared loop, result line and command line
from experiments import pictures  # terminal and PNG pictures

SUMMARY = "Golovneva et al. 2024: contextual position encoding (CoPE) on counting programs"


# ---- the tasks (section 4) ----
# A sample is (token ids, is_target): is_target marks what the model must predict (the answer of a
# program, the bit after each read, the copied tokens); the loss and the errors count those alone.

# <pad> is id 0, pad_batch's pad; <bos> and <eos> are never used here, but they hold ids 1 and 2 so that
# every token id (and so every seeded run, and README's numbers) stays as it was
SPECIALS = ["<pad>", "<bos>", "<eos>"]


def collate_targets(samples):
    """[(ids, is_target)] -> inputs [B, T-1], targets [B, T-1] (next token where it is a target,
    -100 elsewhere); right-padded, which a causal model never sees from earlier positions."""
    ids = train.pad_batch([s for s, _ in samples])
    targets = train.pad_batch([[t if m else -100 for t, m in zip(s, mask)] for s, mask in samples], pad=-100)
    return ids[:, :-1], targets[:, 1:]


class Vocabulary:
    """A task's tokens: token id = index in the class's `vocab` (SPECIALS first). Each task sets
    max_tokens, a bound on the length of its samples."""

    def __init__(self):
        self.id, self.vocab_size = {word: i for i, word in enumerate(self.vocab)}, len(self.vocab)

    def words(self, ids):
        return [self.vocab[i] for i in ids]


class CountingTask(Vocabulary):
    """Counting (section 4.3), as the official generator: over `n_vars` variables, `min_statements`..
    `max_statements` statements `x = 0 ;`, `x ++;` (only of a set variable, never past 10) or `pass;`,
    drawn with weights 1 / 7 / 50, then `print x` about a set variable; the answer is x's value."""

    vocab = SPECIALS + list("abcdefghijklmnopqrstuvwxyz") + ["=", ";", "++;", "pass;", "print"] + \
        [str(v) for v in range(11)]
    weights = {"set": 1, "pass": 50, "increment": 7}   # official generator: SET 1, DUMMY 50, INCREMENT 7
    _ops, _p = list(weights), np.array(list(weights.values())) / sum(weights.values())
    max_value = 10

    def __init__(self, n_vars=3, min_statements=3, max_statements=32):
        if not (1 <= n_vars <= 26 and 1 <= min_statements <= max_statements):
            raise ValueError(f"need 1 <= n_vars {n_vars} <= 26, 1 <= statements {min_statements}..{max_statements}")
        super().__init__()
        self.n_vars, self.min_statements, self.max_statements = n_vars, min_statements, max_statements
        self.max_tokens = 4 * max_statements + 3   # 4 tokens for the longest statement, 3 for the question

    def _statement(self, rng, values):
        while True:  # the official generator redraws a statement it cannot make
            op = self._ops[rng.choice(len(self._ops), p=self._p)]
            if op == "pass":
                return "pass;"
            if op == "set":
                var = "abcdefghijklmnopqrstuvwxyz"[rng.integers(self.n_vars)]
                values[var] = 0
                return f"{var} = 0 ;"
            if values:
                var = sorted(values)[rng.integers(len(values))]
                if values[var] < self.max_value:
                    values[var] += 1
                    return f"{var} ++;"

    def example(self, rng):
        """One program in the official generator's format: {"context", "question", "answer"}."""
        while True:  # a program that sets nothing has no question: redraw it
            values = {}
            n = int(rng.integers(self.min_statements, self.max_statements + 1))
            context = " ".join(self._statement(rng, values) for _ in range(n))
            if values:
                var = sorted(values)[rng.integers(len(values))]
                return {"context": context, "question": f"print {var}", "answer": str(values[var])}

    def encode(self, example):
        """Whitespace tokens of context, question and answer; only the answer is a target."""
        words = " ".join([example["context"], example["question"], example["answer"]]).lower().split()
        unknown = sorted({w for w in words if w not in self.id})
        if unknown:
            raise ValueError(f"unknown tokens {unknown[:5]}")
        return [self.id[w] for w in words], [False] * (len(words) - 1) + [True]

    def sample(self, rng):
        return self.encode(self.example(rng))


def run_program(context, variable):
    """A reference interpreter of a counting program, on the whitespace tokens the model reads: the
    value `print variable` shows. ValueError on a statement other than `x = N ;`, `x ++;`, `pass;`
    (x a letter), and on a variable used before it is set."""
    values, words, n = {}, context.split(), 0
    while n < len(words):
        var, rest, letter = words[n], words[n + 1:n + 4], len(words[n]) == 1 and words[n].isalpha()
        if var == "pass;":
            n += 1
        elif letter and rest[:1] == ["++;"] and var in values:
            values[var], n = values[var] + 1, n + 2
        elif letter and len(rest) == 3 and rest[0] == "=" and rest[1].isdigit() and rest[2] == ";":
            values[var], n = int(rest[1]), n + 4
        else:
            raise ValueError(f"{' '.join(words[n:n + 4])!r} is not `x = 0 ;`, `x ++;` of a set x, or `pass;`")
    if variable not in values:
        raise ValueError(f"`print {variable}` of a variable the program never sets")
    return values[variable]


MAX_STATEMENTS = 1024    # a program's statements, flags and files (paper: up to 512): bounds its length
MAX_LINE = 1 << 16       # characters of a --data line (1024 statements take under 8,000)


def check_example(example):
    """One line of a --data file, returned if its answer is what run_program prints; ValueError if not."""
    if not isinstance(example, dict) or not all(isinstance(example.get(k), str) and example[k].strip()
                                                for k in ("context", "question", "answer")):
        raise ValueError("need non-empty string fields context, question, answer")
    context, question = example["context"].lower(), example["question"].lower().split()
    if context.count(";") > MAX_STATEMENTS:   # every statement ends in ;
        raise ValueError(f"a program of {context.count(';')} statements (at most {MAX_STATEMENTS})")
    if len(question) != 2 or question[0] != "print":
        raise ValueError(f"question {example['question']!r} is not `print x`")
    value = run_program(context, question[1])
    if example["answer"].strip() != str(value):
        raise ValueError(f"answer {example['answer']!r}, but the program prints {value}")
    return example


class FlipFlop(Vocabulary):
    """Flip-flop (section 4.1, Liu et al. 2023): `w b` writes bit b, `r b` reads the last bit written,
    `i b` is ignored (`p_ignore` of the `length` instructions); the first is a write, the last a read.
    Tested with fewer ignores (dense) and more (sparse: the last write lies far back)."""

    vocab = SPECIALS + ["w", "r", "i", "0", "1"]

    def __init__(self, length=32, p_ignore=0.8):
        if length < 2 or not 0 <= p_ignore < 1:
            raise ValueError(f"need length >= 2 and 0 <= p_ignore < 1, got {length} and {p_ignore}")
        super().__init__()
        self.length, self.p_ignore, self.max_tokens = length, p_ignore, 2 * length

    def sample(self, rng):
        p_rw = (1 - self.p_ignore) / 2
        middle = rng.choice(["i", "w", "r"], size=self.length - 2, p=[self.p_ignore, p_rw, p_rw])
        ids, is_target, memory = [], [], None
        for instruction in ["w", *middle, "r"]:
            bit = memory if instruction == "r" else str(rng.integers(2))
            if instruction == "w":
                memory = bit
            ids += [self.id[instruction], self.id[bit]]
            is_target += [False, instruction == "r"]
        return ids, is_target


class SelectiveCopy(Vocabulary):
    """Selective copy (section 4.2, Gu and Dao 2023): `n_tokens` symbols scattered among `n_blanks`
    blanks `.`, then `|` and the symbols in order; tested with fewer and more blanks."""

    vocab = SPECIALS + [".", "|"] + list("ABCDEFGH")

    def __init__(self, n_tokens=8, n_blanks=16):
        if n_tokens < 1 or n_blanks < 0:
            raise ValueError(f"need n_tokens >= 1 and n_blanks >= 0, got {n_tokens} and {n_blanks}")
        super().__init__()
        self.n_tokens, self.n_blanks = n_tokens, n_blanks
        self.symbols, self.max_tokens = [self.id[c] for c in "ABCDEFGH"], 2 * n_tokens + n_blanks + 1

    def sample(self, rng):
        tokens = [int(t) for t in rng.choice(self.symbols, size=self.n_tokens)]
        slots = np.sort(rng.choice(self.n_tokens + self.n_blanks, size=self.n_tokens, replace=False))
        grid = [self.id["."]] * (self.n_tokens + self.n_blanks)
        for slot, token in zip(slots, tokens):
            grid[slot] = token
        ids = grid + [self.id["|"]] + tokens
        return ids, [False] * (len(grid) + 1) + [True] * self.n_tokens


def task_sets(args):
    """The training task of --task and its held-out tasks {name: task}: "" in distribution, then
    out of it (longer programs; dense and sparse strings)."""
    try:
        if args.task == "counting":
            if args.ood_statements <= args.max_statements:
                raise train.UsageError(f"need --max-statements {args.max_statements} < --ood-statements")
            train_task = CountingTask(args.vars, 3, args.max_statements)
            return train_task, {"": train_task, "ood": CountingTask(
                args.vars, args.max_statements + 1, args.ood_statements)}
        if args.task == "flipflop":
            make = lambda p: FlipFlop(args.length, p)
            return make(args.p_ignore), {"": make(args.p_ignore), "dense": make(0.1), "sparse": make(0.98)}
        make = lambda blanks: SelectiveCopy(args.tokens, blanks)
        return make(args.blanks), {"": make(args.blanks), "dense": make(args.blanks // 2),
                                   "sparse": make(args.blanks * 2)}
    except ValueError as error:
        raise train.UsageError(error)


def file_samples(task, path):
    """--data / --eval-data: the programs of a file of the official generator (one JSON object a
    line), checked and encoded; UsageError names the line (bytes that are not UTF-8: unknown tokens)."""
    samples = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for number, line in enumerate(iter(lambda: f.readline(MAX_LINE + 1), ""), 1):
                try:
                    if len(line) > MAX_LINE or not line.strip():
                        raise ValueError(f"a line of over {MAX_LINE} characters" if line.strip() else "empty line")
                    samples.append(task.encode(check_example(json.loads(line))))   # JSONDecodeError: a ValueError
                except (ValueError, RecursionError) as error:   # RecursionError: JSON nested too deep
                    raise train.UsageError(f"{path}:{number}: {error}")
    except OSError as error:
        raise train.UsageError(f"cannot read {path}: {error.strerror}")
    if not samples:
        raise train.UsageError(f"{path}: no programs")
    return samples


# ---- training one model ----

def errors(model, samples, device):
    """Fraction of target tokens predicted wrong, and of sequences with any target wrong."""
    wrong_tokens = targets_seen = wrong_sequences = 0
    batch_size = max(1, min(250, 2 ** 24 // max(len(s) for s, _ in samples) ** 2))   # [B, T, T] bounded
    for start in range(0, len(samples), batch_size):
        inputs, targets = (t.to(device) for t in collate_targets(samples[start:start + batch_size]))
        mask = targets != -100
        wrong = (model(inputs).argmax(-1) != targets) & mask
        wrong_tokens += wrong.sum().item()
        targets_seen += mask.sum().item()
        wrong_sequences += wrong.any(-1).sum().item()
    return wrong_tokens / targets_seen, wrong_sequences / len(samples)


def train_one(args, config, seed, steps, train_task, test_sets, train_samples, label):
    """Train one model (config.pos, one seed) and return (run, metrics, model)."""
    rng = train.seed_everything(seed)
    model = cope.CoPETransformer(config).to(args.device)

    def next_batch():  # fresh samples every step, or a draw from the --data file
        if train_samples:
            chosen = [train_samples[i] for i in rng.integers(len(train_samples), size=args.batch_size)]
        else:
            chosen = [train_task.sample(rng) for _ in range(args.batch_size)]
        return [t.to(args.device) for t in collate_targets(chosen)]

    def loss_fn(model, batch):  # on the targets only (the answer), as in the paper
        inputs, targets = batch
        return F.cross_entropy(model(inputs).flatten(0, 1), targets.flatten(), ignore_index=-100)

    def evaluate(model):
        metrics = {}
        for name, samples in test_sets.items():
            token_error, sequence_error = errors(model, samples, args.device)
            metrics["error" + (f"_{name}" if name else "")] = token_error
            if args.task == "selective-copy":
                metrics["seq_error" + (f"_{name}" if name else "")] = sequence_error
        return metrics

    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    lr_at = lambda step: train.warmup_cosine(step, args.lr, max(1, steps // 20), steps)
    no_early_stop = args.compare or args.target < 0   # --compare: equal steps for every variant
    cpu_start = time.process_time()   # CPU time of this process: less skewed by a busy machine
    run = train.training_loop(model, optimizer, next_batch, loss_fn, evaluate,
                              lambda m: not no_early_stop and m["error"] <= args.target, steps, args.eval_every,
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
    train.add_shared_flags(p, steps="1500; 800 with --compare", batch_size=32, lr=2e-3, eval_every=250)
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
    p.add_argument("--vars", type=train.int_in(1, 26), default=3, help="counting: variables (paper: 1, 3, 5)")
    p.add_argument("--max-statements", type=train.int_in(3, MAX_STATEMENTS - 1), default=32,
                   help="counting: training programs have 3..this many statements (paper: 512)")
    p.add_argument("--ood-statements", type=train.int_in(4, MAX_STATEMENTS), default=64,
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
    test_rng = np.random.default_rng(train.TEST_SEED)
    test_sets = {name: [task.sample(test_rng) for _ in range(args.test_size)] for name, task in test_tasks.items()}
    train_samples = file_samples(train_task, args.data) if args.data else None
    if args.eval_data:
        test_sets["file"] = file_samples(train_task, args.eval_data)
    variants = ["cope", "abs", "rope"] if args.compare else [args.pos]
    block_size = max([train_task.max_tokens] + [len(ids) for s in [*test_sets.values(), train_samples or []]
                                                  for ids, _ in s])
    try:  # every variant's model, checked before any training starts
        configs = {pos: cope.CoPEConfig(vocab_size=train_task.vocab_size, block_size=block_size, n_layer=args.layers,
                                        n_head=args.heads, d_model=args.d_model, d_ff=4 * args.d_model,
                                        npos_max=args.npos_max, pos=pos) for pos in variants}
    except ValueError as error:
        raise train.UsageError(error)
    seeds = args.seeds or (3 if args.compare else 1)
    print(f"task {args.task}: " + ", ".join(
        f"{name or 'in distribution'} {len(s)} held-out sequences of {min(len(x) for x, _ in s)}-"
        f"{max(len(x) for x, _ in s)} tokens" for name, s in test_sets.items()))
    results, curves = [], {}
    for pos in variants:
        runs = []
        for n in range(seeds):
            label = pos if seeds == 1 else f"{pos} seed {args.seed + n}"
            one_run, metrics, model = train_one(args, configs[pos], args.seed + n, steps, train_task, test_sets,
                                                train_samples, label)
            if n == 0:
                print(f"{pos}: {metrics['parameters']:,} parameters, device {args.device}")
                show_gates(args, train_task, model, test_sets[list(test_tasks)[-1]],
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
