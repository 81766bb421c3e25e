"""Hopfield Networks is All You Need (Ramsauer et al. 2020): the experiment behind `python train.py hopfield`.

Two tasks. --task mil (the default) is a miniature of the paper's immune-repertoire task (section 4):
only a bag of instances has a label, and a positive bag hides a few witnesses among hundreds of
random vectors; HopfieldPooling's learned query must retrieve them. --compare adds mean and max
pooling at equal size, which dilute or drop the witnesses. --task retrieval trains nothing: it stores
N random +-1 patterns, queries each with a corrupted copy and counts exact retrievals of the classical
(0.14 d), the dense (F = exp) and the modern network (section 2: exponential capacity, one update).
"""
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

import hopfield as hf             # the model: the root file hopfield.py
import train                      # the shared loop, result line and command line
from experiments import pictures  # terminal and PNG pictures

SUMMARY = ("Ramsauer et al. 2020: Hopfield pooling on bags with rare witnesses (--task mil), "
           "or the capacity of classical vs modern Hopfield networks (--task retrieval)")


# ---------------------------------------------------------------------------------------------
# The task: multiple-instance bags with rare witnesses
#
# The miniature of Ramsauer et al.'s immune-repertoire task (section 4): only the bag has a label.
# Every instance is a random vector from N(0, I); a positive bag hides a few witnesses, noisy copies
# m + noise * N(0, I) of one hidden motif m, itself drawn from N(0, I) so that it looks like any
# other instance. With 2 witnesses in 200 instances the witness rate is 1%. A single witness is easy
# to recognise once you know m (it lies far closer to m than the background does); the task is to
# find it among the rest, which pooling by the mean dilutes by the bag size.
# ---------------------------------------------------------------------------------------------

class WitnessBags:
    """Balanced bags [B, bag_size, dim] with labels [B] (1: witnesses present) and the witness mask.
    `motif_seed` fixes the motif; data seeds only draw bags."""

    def __init__(self, dim=16, bag_size=200, witnesses=2, noise=0.5, motif_seed=0):
        if not 1 <= witnesses <= bag_size:
            raise ValueError(f"need 1 <= witnesses <= bag size, got {witnesses} and {bag_size}")
        if noise <= 0:
            raise ValueError(f"need noise > 0, got {noise}")
        self.dim, self.bag_size, self.witnesses, self.noise = dim, bag_size, witnesses, noise
        # its own stream (a seed sequence), so no data seed ever draws the motif itself as an instance
        self.motif = np.random.default_rng([motif_seed, 2020]).standard_normal(dim)

    def batch(self, n, rng):
        """-> bags float [n, bag_size, dim], labels float [n], witness bool [n, bag_size]."""
        bags = rng.standard_normal((n, self.bag_size, self.dim))
        labels = rng.permutation(np.arange(n) % 2)
        witness = np.zeros((n, self.bag_size), dtype=bool)
        for row in np.flatnonzero(labels):
            where = rng.choice(self.bag_size, size=self.witnesses, replace=False)
            witness[row, where] = True
            bags[row, where] = self.motif + self.noise * rng.standard_normal((self.witnesses, self.dim))
        return (torch.tensor(bags, dtype=torch.float32), torch.tensor(labels, dtype=torch.float32),
                torch.tensor(witness))

    def bayes_log_odds(self, bags):
        """The ceiling: log p(bag | positive) / p(bag | negative) for an observer who knows the motif
        and the noise, [n]. Per instance r = N(x; m, noise^2 I) / N(x; 0, I); the bag's ratio is the
        mean of prod(r) over every set of `witnesses` positions (an elementary symmetric polynomial,
        built up instance by instance in log space)."""
        x, k = bags.double(), self.witnesses
        log_r = (-((x - torch.tensor(self.motif)) ** 2).sum(-1) / (2 * self.noise ** 2)
                 - self.dim * np.log(self.noise) + (x ** 2).sum(-1) / 2)               # [n, bag_size]
        log_e = torch.full((k + 1, len(x)), -np.inf, dtype=torch.float64)       # log e_j, j = 0..k
        log_e[0] = 0.0
        for i in range(self.bag_size):  # e_j += r_i e_{j-1} for every j at once, from the old e
            log_e[1:] = torch.logaddexp(log_e[1:], log_r[:, i] + log_e[:-1])
        log_subsets = sum(np.log(self.bag_size - j) - np.log(j + 1) for j in range(k))
        return log_e[k] - log_subsets


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------

MAX_VALUES = 2 ** 26  # values one tensor of a run may hold (256 MB in float32): the cross-flag bound


def add_flags(p):
    train.add_shared_flags(p, steps=2000, batch_size=32, lr=1e-3, eval_every=20)
    p.add_argument("--task", choices=["mil", "retrieval"], default="mil",
                   help="mil: train HopfieldPooling on bags; retrieval: no training, capacity table")
    p.add_argument("--dim", type=train.int_in(1, 4096), help="instance width (mil, default 16) or pattern "
                   "dimension d (retrieval, default 64)")
    p.add_argument("--beta", type=train.float_in(1e-6, 1e6), help="inverse temperature; default 1/sqrt(d_k) "
                   "in the MIL layer (section 3), 1 for retrieval")
    # the MIL flags, read by run
    p.add_argument("--bag-size", type=train.int_in(1, 100_000), default=200, help="mil: instances per bag")
    p.add_argument("--witnesses", type=train.int_in(1, 1000), default=2,
                   help="mil: witnesses in a positive bag (at most --bag-size)")
    p.add_argument("--noise", type=train.float_in(1e-3, 100.0), default=0.5,
                   help="mil: spread (> 0) of the witnesses around the motif")
    p.add_argument("--d-model", type=train.int_in(8, 4096), default=32, help="mil: model width")
    p.add_argument("--heads", type=train.int_in(1, 64), default=1,
                   help="mil: Hopfield heads, dividing --d-model (library default 1)")
    p.add_argument("--queries", type=train.int_in(1, 64), default=1,
                   help="mil: learned queries (state patterns) of HopfieldPooling (library: quantity 1)")
    p.add_argument("--update-steps", type=train.int_in(1, 64), default=1, help="mil: Hopfield updates per pooling")
    p.add_argument("--test-size", type=train.int_in(1, 100_000), default=1000, help="mil: held-out bags")
    p.add_argument("--target", type=train.float_in(0.0, 2.0), default=0.95,
                   help="mil: held-out accuracy that counts as solved (above 1: never stop early)")
    # the retrieval flags, read by run_retrieval
    p.add_argument("--max-patterns", type=train.int_in(2, 2 ** 20), default=16384,
                   help="retrieval: largest N (the table doubles N from 2)")
    p.add_argument("--probes", type=train.int_in(1, 100_000), default=100, help="retrieval: queries per N")
    p.add_argument("--query", choices=["mask", "flip"], default="mask",
                   help="retrieval: mask the last part of each pattern (set to 0) or flip random bits")
    p.add_argument("--corrupt", type=train.float_in(0.0, 1.0), default=0.5,
                   help="retrieval: fraction of bits masked or flipped, strictly between 0 and 1")


def values_per_bag(args, dim):
    """Roughly the activations one bag holds in training: its instances, and per instance the
    embedding, norms and projections (about 8 d_model) and the baselines' output (d_model x queries)."""
    return args.bag_size * (dim + args.d_model * (8 + args.queries))


def check_sizes(args, dim):
    """Cross-flag bounds, checked before any work, so that a run fits in memory (UsageError)."""
    if args.task == "retrieval":
        d, N = dim, args.max_patterns
        largest = N * max(d, min(N, args.probes))   # the patterns [N, d]; the dense overlaps [probes, N]
        if largest > MAX_VALUES:
            raise train.UsageError(f"--max-patterns {N} with --dim {d} and --probes {args.probes}: "
                                   f"{largest:,} values in one tensor, at most {MAX_VALUES:,} fit")
        return
    if args.witnesses > args.bag_size:
        raise train.UsageError(f"--witnesses {args.witnesses} exceeds --bag-size {args.bag_size}")
    checks = [("--test-size x --bag-size x --dim", args.test_size * args.bag_size * dim, MAX_VALUES),
              ("one training batch (--batch-size, --bag-size, --dim, --d-model, --queries)",
               args.batch_size * values_per_bag(args, dim), 4 * MAX_VALUES),
              ("the parameters (--d-model squared x (5 + --queries))",
               args.d_model ** 2 * (5 + args.queries), 2 * MAX_VALUES)]
    for what, size, bound in checks:
        if size > bound:
            raise train.UsageError(f"{what}: {size:,} values, at most {bound:,} fit")


def finite(value, digits=None):
    """None for NaN or infinity (a diverged model), so that the result line stays strict JSON."""
    if not math.isfinite(value):
        return None
    return round(value, digits) if digits is not None else value


def run(args):
    """--task mil: a HopfieldPooling classifier finds rare witnesses in bags; --compare adds mean and
    max pooling at equal size. --task retrieval: no training, the capacity table of section 2."""
    dim = args.dim or (64 if args.task == "retrieval" else 16)   # --dim's default differs by task
    check_sizes(args, dim)
    if args.task == "retrieval":
        return run_retrieval(args, dim)
    try:
        task = WitnessBags(dim, args.bag_size, args.witnesses, args.noise)
        # beta None: the layer's 1/sqrt(d_k), as in the Transformer (section 3)
        configs = {pooling: hf.HopfieldConfig(d_model=args.d_model, n_heads=args.heads, beta=args.beta,
                                              update_steps=args.update_steps, n_patterns=args.queries,
                                              d_instance=task.dim, pooling=pooling)
                   for pooling in (["hopfield", "mean", "max"] if args.compare else ["hopfield"])}
    except ValueError as error:
        raise train.UsageError(error)
    test = [t.to(args.device) for t in task.batch(args.test_size, np.random.default_rng(train.TEST_SEED))]
    bayes = ((task.bayes_log_odds(test[0].cpu()) > 0).float() == test[1].cpu()).float().mean().item()
    print(f"bags of {task.bag_size} instances of width {task.dim}; positive bags hold "
          f"{task.witnesses} witnesses (witness rate {task.witnesses / task.bag_size:.2%}), noise {task.noise}; "
          f"an observer who knows the motif classifies {bayes:.3f} of the held-out bags right (the ceiling)")
    results, curves, accuracies = [], {}, {}
    eval_batch = max(1, min(250, 4 * MAX_VALUES // values_per_bag(args, dim)))
    for variant, config in configs.items():
        rng, accuracies[variant] = train.seed_everything(args.seed), []
        model = hf.MILClassifier(config).to(args.device)
        print(f"{variant} pooling: {train.count_parameters(model):,} parameters, device {args.device}")

        def next_batch():
            return [t.to(args.device) for t in task.batch(args.batch_size, rng)]

        def loss_fn(model, batch):
            bags, labels, _ = batch
            return F.binary_cross_entropy_with_logits(model(bags)[0], labels)

        def evaluate(model):
            scores = mil_scores(model, test, eval_batch)
            accuracies[variant].append(scores["accuracy"])  # one per --eval-every steps
            return scores

        optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr,
                                      fused=args.device.startswith("cuda"))  # one kernel a step on a GPU
        training = train.training_loop(model, optimizer, next_batch, loss_fn, evaluate,
                                       solved=lambda metrics: metrics["accuracy"] >= args.target,
                                       steps=args.steps, eval_every=args.eval_every, label=variant,
                                       **train.settings(args, "mil", variant))
        curves[variant] = training["losses"]
        last = training["losses"][-1] if training["losses"] else math.nan
        metrics = dict(training["metrics"], final_loss=finite(last, 4),
                       parameters=train.count_parameters(model), bayes_accuracy=round(bayes, 4))
        results.append(("mil", variant, training, metrics, model))
        if variant == "hopfield":
            show_bag_attention(args, model, test)
    pictures.save_loss_curves(args, curves)
    tables = []
    if args.compare:  # also each pooling's accuracy after as many steps as Hopfield pooling took
        budget = len(accuracies["hopfield"])
        shown = lambda value: "-" if value is None else f"{value:.3f}"   # "-": not evaluated (diverged)
        at_budget = lambda curve: curve[min(budget, len(curve)) - 1] if curve and budget else None
        tables.append((None, ["pooling", "parameters", "steps", "seconds", "test accuracy",
                              f"test accuracy at step {results[0][2]['steps']}", "attention on witnesses"],
                       [[variant, metrics["parameters"], training["steps"], training["seconds"],
                         shown(metrics.get("accuracy")), shown(at_budget(accuracies[variant])),
                         shown(metrics.get("witness_attention"))]
                        for _, variant, training, metrics, _ in results]))
    return results, tables


def mil_scores(model, test, batch_size=250):
    """Held-out accuracy and loss; for Hopfield pooling also the attention mass on the witnesses of
    positive bags (1.0: the query retrieves only witnesses; witness rate: no better than the mean),
    None where there is no positive bag (a test set of one bag) or the model diverged."""
    bags, labels, witness = test
    logits, on_witnesses = [], []
    for i in range(0, len(bags), batch_size):
        logit, attention = model(bags[i:i + batch_size])
        logits.append(logit)
        if attention is not None:
            on_witnesses.append((attention * witness[i:i + batch_size]).sum(-1))
    logits = torch.cat(logits).float()
    scores = {"accuracy": ((logits > 0).float() == labels).float().mean().item(),
              "test_loss": finite(F.binary_cross_entropy_with_logits(logits, labels).item())}
    if on_witnesses:
        positive = torch.cat(on_witnesses)[labels == 1]
        scores["witness_attention"] = finite(positive.mean().item(), 4) if len(positive) else None
    return scores


def show_bag_attention(args, model, test, bags_shown=6, per_cell=4):
    """HopfieldPooling's association over the instances of a few held-out bags, `per_cell` instances
    summed per column; the row label says where the witnesses are."""
    bags, labels, witness = (t[:bags_shown] for t in test)
    with torch.no_grad():
        attention = model(bags)[1].float().cpu().numpy()
    if not np.isfinite(attention).all():  # a diverged model: nothing to draw
        print("HopfieldPooling attention on held-out bags: not finite (the run diverged), no picture")
        return
    cells = -(-attention.shape[1] // per_cell)                       # the last column may sum fewer
    attention = np.pad(attention, ((0, 0), (0, cells * per_cell - attention.shape[1])))
    weights = attention.reshape(len(bags), cells, per_cell).sum(-1)
    rows = [f"{'+' if y else '-'} bag, witnesses at {torch.nonzero(w).flatten().tolist()}"
            for y, w in zip(labels.tolist(), witness.cpu())]
    cols = [str(i * per_cell) if i % 5 == 0 else "" for i in range(weights.shape[1])]
    title = f"HopfieldPooling attention on held-out bags (each column sums {per_cell} instances)"
    pictures.show_heatmap(args, "attention.png", weights, rows, cols, title)


def run_retrieval(args, d):
    """Store N random +-1 patterns of dimension d, query each probed one with a corrupted copy, count
    exact retrievals (every sign right) for the classical, dense (F = exp) and modern networks.
    No training: the result's `steps` is the number of queries probed over all N, and `solved` says
    that the modern network retrieved >= 99% of them at every N."""
    if not 0 < args.corrupt < 1:
        raise train.UsageError(f"--corrupt must lie strictly between 0 and 1, got {args.corrupt}")
    beta = args.beta or 1.0  # not the layers' 1/sqrt(d): see hopfield.py's notes on metastable states
    rng, start = train.seed_everything(args.seed), time.time()
    sizes = [2 ** k for k in range(1, int(math.log2(args.max_patterns)) + 1)]
    rows, metrics, probed, example = [], {}, 0, None
    pictured = min(sizes, key=lambda N: abs(N - d))  # the N whose retrievals are drawn
    for N in sizes:
        hits = dict.fromkeys(["classical", "dense", "modern_one_update", "modern"], 0)
        steps, count = [], 0
        for trial in range(math.ceil(args.probes / N)):
            X = random_patterns(N, d, rng).to(args.device)
            target = X[:min(N, args.probes)]
            query = corrupt(target, args.query, args.corrupt, rng)
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
    show_retrievals(args, example, d, pictured)
    caption = (f"d = {d}, beta = {beta}, queries: {args.query} {args.corrupt:.0%} of the bits; exact retrieval "
               f"(every sign right); 0.14 d = {0.14 * d:.1f}; capacity_* below: largest N with >= 99%")
    table = (caption, ["N", "N / d", "queries", "classical", "dense (exp)", "modern, 1 update", "modern",
                       "modern steps mean (max)"], rows)
    solved = all(metrics[f"N={N}"]["modern"] >= 0.99 for N in sizes)
    probing = {"steps": probed, "seconds": round(time.time() - start, 2), "solved": solved}
    return [("retrieval", "classical-dense-modern", probing, metrics, None)], [table]


def random_patterns(N, d, rng):
    """N stored patterns of d bits, each -1 or +1 with probability 1/2: [N, d] float32."""
    return torch.tensor(rng.choice([-1.0, 1.0], size=(N, d)), dtype=torch.float32)


def corrupt(target, how, fraction, rng):
    """The queries: "mask" sets the last round(fraction d) bits of each pattern to 0 (unknown: the
    midpoint of -1 and +1); "flip" flips each bit with probability fraction."""
    query = target.clone()
    d = target.shape[1]
    if how == "mask":
        query[:, d - round(fraction * d):] = 0
    else:
        flip = torch.tensor(rng.random(tuple(query.shape)) < fraction).to(query.device)
        query[flip] = -query[flip]
    return query


def show_retrievals(args, example, d, N):
    """Each probed pattern as a picture: stored, query, classical and modern retrievals."""
    if not all(torch.isfinite(row).all() for row in example):   # e.g. an overflowing beta
        print(f"retrievals at N = {N}: not finite, no picture")
        return
    side = max(s for s in range(1, int(math.sqrt(d)) + 1) if d % s == 0)
    names = ["stored", "query", "classical", "modern"]
    for i in range(min(2, len(example[0]))):
        pictures.print_heatmap([(row[i].numpy() + 1) / 2 for row in example], names, [""] * d,
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
    pictures.save_png(args, "retrievals.png", draw)
