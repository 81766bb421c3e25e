"""End-To-End Memory Networks (Sukhbaatar et al. 2015): the experiment behind `python train.py memn2n`.

A MemN2N with 3 hops, position encoding (PE), linear start (LS) and random noise (RN) answers the questions
of a bAbI-style task (--task all, or a list such as 1,3: one model trained jointly on those tasks and tested on
each), trained the paper's way (section 4.2), then shows a test story with each hop's attention (Figure 2).
Several hops chain facts that one cannot: --compare prints Table 1's hop columns in miniature, 1, 2 and 3 hops,
each one model trained jointly on tasks 1-3 with its column's settings, beside the paper's. --data DIR trains
and tests on the real bAbI files instead. --restarts 10 trains each model ten times and keeps the run with the
lowest training error, as the paper."""
import argparse
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

import memn2n                     # the model: the root file memn2n.py
import train                      # the shared loop, result line and command line
from experiments import babi, pictures  # bAbI stories and files; terminal and PNG pictures

SUMMARY = "Sukhbaatar et al. 2015: End-To-End Memory Network on bAbI-style stories"

def memn2n_tasks(text):
    """--task: 1, 2, 3, all (= 1,2,3) or a comma list such as 1,3 without repeats -> the tasks, in that order."""
    names = [str(task) for task in babi.TASKS]
    tasks = names if text == "all" else [t.strip() for t in text.split(",")]
    if any(t not in names for t in tasks) or len(set(tasks)) < len(tasks):
        raise argparse.ArgumentTypeError(f"expected 1, 2, 3, all or a comma list such as 1,3 (no repeats), "
                                         f"got {text!r}")
    return [int(t) for t in tasks]


def memn2n_data(args, tasks, train_size):
    """Examples and tensors {"train", "val", "test": {task: ...}} of the tasks: for each, train_size questions
    from --seed and a test set from TEST_SEED, or its files under --data. 10% of the training questions are
    for validation, as the official code: one task, the last 10% (config_babi.m); several tasks, trained on
    together (Table 1's joint training), a random 10% of their pool (config_babi_joint.m). One vocabulary;
    the test sets stay apart."""
    examples = {"train": [], "val": [], "test": {}}
    for task in tasks:
        if args.data:
            train_examples, test_examples = (babi.read(args.data, task, split) for split in ("train", "test"))
        else:
            generate = lambda n, seed: babi.to_examples(babi.generate(task, n, np.random.default_rng(seed)))
            train_examples, test_examples = generate(train_size, args.seed), generate(args.test_size, train.TEST_SEED)
        if len(train_examples) < 10:
            raise train.UsageError(f"task {task}: need at least 10 training questions, got {len(train_examples)}")
        held = len(train_examples) // 10
        examples["train"] += train_examples[:-held]
        examples["val"] += train_examples[-held:]
        examples["test"][task] = test_examples
    if len(tasks) > 1:
        pool = examples["train"] + examples["val"]
        order = np.random.default_rng(args.seed).permutation(len(pool))
        held = len(pool) // 10
        examples["train"], examples["val"] = [pool[i] for i in order[:-held]], [pool[i] for i in order[-held:]]
    vocab = babi.vocabulary(examples["train"], examples["val"], *examples["test"].values())
    tensors = lambda e: [t.to(args.device) for t in babi.to_tensors(e, vocab, args.memory_size)]
    data = {"train": tensors(examples["train"]), "val": tensors(examples["val"]),
            "test": {task: tensors(e) for task, e in examples["test"].items()}}
    return examples, data, vocab


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------

# Table 1 (bAbI 1k, test error %), the columns that vary the hops, each one model trained jointly on the 20
# tasks (here --compare: jointly on tasks 1-3): hops -> the column's settings, and task -> hops -> %
MEMN2N_PAPER_COLUMNS = {1: "PE LS joint", 2: "PE LS joint", 3: "PE LS RN joint"}
MEMN2N_PAPER_ERRORS = {1: {1: 0.8, 2: 0.0, 3: 0.0}, 2: {1: 62.0, 2: 15.6, 3: 11.4},
                       3: {1: 76.9, 2: 31.6, 3: 21.9}}
class Recipe(NamedTuple):
    train_size: int      # generated training questions a task (bAbI 1k: 1000)
    dim: int             # embedding size d
    ls_epochs: int       # epochs of linear start, at lr / 2, before the softmax comes back
    epochs: int          # epochs after linear start, the lr halved every `halving` epochs
    halving: int
    target_error: float  # validation error that stops training early; None: every epoch trained


# The paper's recipes (section 4.2) as the official code runs them: one task (config_babi.m) and joint
# training (config_babi_joint.m, Table 1's hop columns), wherever the paper's setting runs (--data, --compare,
# several tasks). The default run on generated data keeps a shorter one: bAbI's 10k set, where an epoch is ten
# times the updates, so 10 epochs of linear start (still 5x the 1k recipe's LS updates), and a stop at 3%
# validation error. The flags --train-size, --dim, --ls-epochs, --epochs and --target-error override any of them.
MEMN2N_ONE_TASK = Recipe(train_size=1000, dim=20, ls_epochs=20, epochs=100, halving=25, target_error=None)
MEMN2N_JOINT = Recipe(train_size=1000, dim=50, ls_epochs=30, epochs=60, halving=15, target_error=None)
MEMN2N_SHORT = Recipe(train_size=10000, dim=20, ls_epochs=10, epochs=40, halving=25, target_error=0.03)


def memn2n_recipe(args, tasks):
    """The Recipe of this run, with the flags given over it."""
    recipe = MEMN2N_JOINT if len(tasks) > 1 else MEMN2N_ONE_TASK if args.data else MEMN2N_SHORT
    given = {name: getattr(args, name) for name in Recipe._fields if getattr(args, name, None) is not None}
    return recipe._replace(**given)


def add_flags(p):
    train.add_shared_flags(p, steps="--ls-epochs + --epochs epochs", batch_size=32, lr=0.01,
                           eval_every="one epoch",
                           lr_help="SGD learning rate for the loss summed over a batch (paper: 0.01; "
                                   "with linear start half of it, in both phases, as the official code)")
    p.add_argument("--task", type=memn2n_tasks, default="2",
                   help="bAbI task: 1 single, 2 two, 3 three supporting facts; all, or a comma list such as "
                        "1,3: one model trained jointly on their pooled questions (as Table 1), tested per task")
    p.add_argument("--hops", type=train.int_in(1, 20), default=3, help="memory hops K (paper: 3)")
    p.add_argument("--tying", choices=["adjacent", "layerwise"], default="adjacent",
                   help="weight tying across hops (section 2.2)")
    p.add_argument("--encoding", choices=["pe", "bow"], default="pe",
                   help="sentence representation: position encoding or bag of words (section 4.1)")
    p.add_argument("--no-linear-start", dest="linear_start", action="store_false",
                   help="turn linear start off: softmax in every hop from the start (default: LS on)")
    p.add_argument("--ls-epochs", type=train.int_in(1, 1000),
                   help="epochs of linear start, before the softmax comes back (official code: 20 for one task, "
                        "30 joint; default 10 for one task on the generated 10k set)")
    p.add_argument("--random-noise", type=train.float_in(0, 1), default=0.1,
                   help="RN: blank time slots, a share of a story's sentences, inserted at training time "
                        "(0: off; --compare: on 3 hops only, as Table 1)")
    p.add_argument("--dim", type=train.int_in(1, 1024),
                   help="embedding size d (paper: 20 for one task, 50 joint)")
    p.add_argument("--memory-size", type=train.int_in(1, 200), default=50,
                   help="most recent sentences kept (paper: 50)")
    p.add_argument("--train-size", type=train.int_in(10, 100_000),
                   help="generated training questions a task, 10%% held out for validation (bAbI: 1000 or "
                        "10000; default 10000 for one task, 1000 for several and --compare, as Table 1)")
    p.add_argument("--test-size", type=train.int_in(1, 100_000), default=1000,
                   help="generated test questions a task (bAbI: 1000)")
    p.add_argument("--epochs", type=train.int_in(1, 1000),
                   help="epochs after linear start, the lr halved every 25 (one task) or 15 (joint) (default: "
                        "the official code's 100 for one task with --data, 60 for several tasks and --compare; "
                        "40 for one task on generated data)")
    p.add_argument("--target-error", type=train.float_in(0, 1),
                   help="validation error at which training stops early, once linear start is over (default: "
                        "none with --data, several tasks or --compare: every epoch trained, as the paper; 0.03 "
                        "for one task on generated data)")
    p.add_argument("--restarts", type=train.int_in(1, 100), default=1,
                   help="trainings of each model from different initialisations on the same data, the one with "
                        "the lowest training error kept (paper, section 4.2: 10); restart i = 0, 1, ... seeds its "
                        "initialisation and batch order with (--seed + i) mod 2^32, so restart 0 is the run "
                        "--seed gives alone")
    p.add_argument("--data", metavar="DIR",
                   help="train and test on the real bAbI files qaN_*_train.txt / qaN_*_test.txt in DIR, with "
                        "the paper's recipe (no --train-size)")


def memn2n_schedule(step, per_epoch, ls_epochs, lr, halving):
    """(learning rate, LS on?) at step 1, 2, ..., as the official code: LS (ls_epochs > 0) at a constant lr / 2
    (its halving, at epoch ls_epochs + 1, never comes), then the schedule restarts at lr / 2 with the softmax
    (without LS: at lr), halved at the start of epochs halving, 2 halving, ... (train.m: `if mod(ep, 25) == 0`
    for one task, 15 joint)."""
    ls_steps = ls_epochs * per_epoch
    if step <= ls_steps:
        return lr / 2, True
    epoch = (step - ls_steps - 1) // per_epoch + 1  # 1, 2, ... within the phase
    return (lr / 2 if ls_epochs else lr) * 0.5 ** (epoch // halving), False


def memn2n_scores(model, data, batch_size=500):
    """(mean loss, error rate) over story, query, answer tensors."""
    story, query, answer = data
    loss, wrong = 0.0, 0
    for i in range(0, len(answer), batch_size):
        logits = model(story[i:i + batch_size], query[i:i + batch_size])
        loss += F.cross_entropy(logits, answer[i:i + batch_size], reduction="sum").item()
        wrong += (logits.argmax(-1) != answer[i:i + batch_size]).sum().item()
    return loss / len(answer), wrong / len(answer)


def memn2n_train_one(args, hops, random_noise, data, vocab, label, seed, recipe, settings):
    """One MemN2N trained the paper's way (section 4.2) on the training questions of data's task, or of its
    tasks together, its initialisation and batch order from seed; returns (run, model, optimizer).
    recipe: the run's Recipe. settings: train.settings(...) of the run."""
    rng = train.seed_everything(seed)
    config = memn2n.MemN2NConfig(len(vocab), d=recipe.dim, hops=hops, memory_size=args.memory_size,
                                 tying=args.tying, encoding=args.encoding, random_noise=random_noise)
    model = memn2n.MemN2N(config).to(args.device)
    model.vocab = vocab  # the words behind the ids: a checkpoint needs them to be read again
    model.linear_start = args.linear_start
    story, query, answer = data["train"]
    sentences = (story != 0).any(-1).sum(1).cpu()  # on the host: a batch's width never waits for the device
    n = len(answer)
    batch_size = min(args.batch_size, n)
    per_epoch = n // batch_size
    ls_epochs = recipe.ls_epochs if args.linear_start else 0
    steps = getattr(args, "steps", None) or (ls_epochs + recipe.epochs) * per_epoch
    eval_every = getattr(args, "eval_every", None) or per_epoch
    print(f"[{label}] bAbI task{'s' * (len(data['test']) > 1)} "
          f"{', '.join(f'{t} ({babi.TASKS[t]})' for t in data['test'])}, seed {seed}, "
          f"{hops} hops, {train.count_parameters(model):,} parameters; {n} training / {len(data['val'][2])} "
          f"validation / {sum(len(d[2]) for d in data['test'].values())} test questions; {steps} steps of "
          f"{batch_size} ({per_epoch} steps an epoch)")

    def epoch_batches():  # every training question once an epoch, in a fresh order
        while True:
            order = torch.from_numpy(rng.permutation(n))
            for i in range(per_epoch):
                chosen = order[i * batch_size:(i + 1) * batch_size]
                width = int(sentences[chosen].max())  # slots that are padding in the whole batch only cost time
                chosen = chosen.to(args.device)
                yield story[chosen, :width], query[chosen], answer[chosen]

    batches = epoch_batches()

    # Section 4.2 and the official code (memn2n_schedule, which also ends LS). The paper sums the loss over
    # the batch; we average it, so the step is lr x batch size and the norm clip 40 / batch size: the same.
    def lr_at(step):
        lr, linear_start = memn2n_schedule(step, per_epoch, ls_epochs, args.lr, recipe.halving)
        if model.linear_start and not linear_start:
            print(f"[{label}] step {step}: linear start over, softmax back in every hop")
        model.linear_start = linear_start
        return lr * batch_size

    def evaluate(model):  # validation over the tasks together; test error: the mean of the tasks'
        val_loss, val_error = memn2n_scores(model, data["val"])
        test_errors = [memn2n_scores(model, test)[1] for test in data["test"].values()]
        return {"val_loss": val_loss, "val_error": val_error, "test_error": sum(test_errors) / len(test_errors)}

    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
    run = train.training_loop(
        model, optimizer, lambda: next(batches),
        lambda m, batch: F.cross_entropy(m(*batch[:2]), batch[2]), evaluate,
        solved=lambda m: (recipe.target_error is not None and not model.linear_start
                          and m["val_error"] <= recipe.target_error),
        steps=steps, eval_every=eval_every, lr_at=lr_at, clip=40 / batch_size, label=label,
        **settings)
    return run, model, optimizer


def memn2n_restarts(args, hops, random_noise, data, vocab, label, recipe):
    """Section 4.2: each configuration trained --restarts times from different initialisations on the same data,
    and the run with the lowest training error kept, scored after training in eval mode. Returns the kept
    run's result for each of its tasks, (task, variant, run, metrics, model): the task's test error and loss
    with the run's own metrics (validation error over its tasks together, size, the restarts' errors)."""
    settings = train.settings(args, "babi-task" + "+".join(map(str, data["test"])), label, vocab)
    n, kept, train_errors, test_errors = args.restarts, None, [], {task: [] for task in data["test"]}
    for restart in range(n):
        seed = (args.seed + restart) % (train.MAX_SEED + 1)  # restart 0: the run of --seed alone
        run, model, optimizer = memn2n_train_one(args, hops, random_noise, data, vocab, label, seed, recipe,
                                                 settings)
        model.eval()
        with torch.no_grad():
            train_errors.append(memn2n_scores(model, data["train"])[1])
            tests = {task: memn2n_scores(model, test) for task, test in data["test"].items()}
        for task, (_, error) in tests.items():
            test_errors[task].append(error)
        if n > 1:
            print(f"[{label}] restart {restart + 1} of {n} (seed {seed}): training error "
                  f"{100 * train_errors[-1]:.1f}%, test error "
                  + ", ".join(f"task {task} {100 * error:.1f}%" for task, (_, error) in tests.items()))
        if kept is None or train_errors[-1] < train_errors[kept[0]]:  # only the best model so far is kept
            kept = (restart, run, model, optimizer, tests)
    restart, run, model, optimizer, tests = kept
    if n > 1:  # model.pt: the kept run's, not the last one's
        train.save_checkpoint(settings["checkpoint"], model, optimizer, run["steps"], run["losses"], run["seconds"],
                              None, True)
    with torch.no_grad():
        shared = {"val_error": round(memn2n_scores(model, data["val"])[1], 4),
                  "train_error": round(train_errors[restart], 4), "final_loss": round(run["losses"][-1], 4),
                  "hops": hops, "parameters": train.count_parameters(model),
                  "training_questions": len(data["train"][2])}
    if n > 1:
        shared |= {"restarts": n, "kept_restart": restart + 1,
                   "train_error_restarts": [round(e, 4) for e in train_errors]}
    results = []
    for task, (test_loss, test_error) in tests.items():
        metrics = {"test_error": round(test_error, 4), "test_loss": round(test_loss, 4), **shared}
        kept_line = spread = ""
        if n > 1:
            metrics["test_error_restarts"] = [round(e, 4) for e in test_errors[task]]
            kept_line = f"kept restart {restart + 1} of {n} (lowest training error): "
            low, middle, high = (100 * f(test_errors[task]) for f in (np.min, np.median, np.max))
            spread = f"; over the restarts min {low:.1f} / median {middle:.1f} / max {high:.1f}%"
        print(f"[{label}] {kept_line}task {task}: test error {100 * test_error:.1f}% (paper, Table 1 at 1k: "
              f"{MEMN2N_PAPER_ERRORS[task].get(hops, '-')}%){spread}")
        results.append((f"babi-task{task}", label, run, metrics, model))
    return results


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
    supported = [i + offset in example.support for i in range(len(memory))]
    print(f"\nquestion: {' '.join(example.question)}?  answer: {example.answer}  model: {vocab[guess]}")
    print("support | " + " | ".join(hops) + " | sentence")
    for words, row, mark in zip(memory, weights, supported):
        print(f"{'   *   ' if mark else '       '} | " + " | ".join(f"{w:5.2f}" for w in row) + f" | {' '.join(words)}")
    labels = [("* " if mark else "  ") + " ".join(words) for words, mark in zip(memory, supported)]
    title = f"{' '.join(example.question)}? ({example.answer}): attention of each hop (* supporting fact)"
    pictures.show_heatmap(args, "hops.png", weights, labels, hops, title)


def memn2n_table(args, finished, train_size):
    """Test error % per task and hops, beside Table 1 of the paper."""
    errors = {(int(task[-1]), m["hops"]): m["test_error"] for task, _, _, m, _ in finished}
    tasks_run, hops_run = sorted({t for t, _ in errors}), sorted({k for _, k in errors})
    here = "here" + " joint" * (len(tasks_run) > 1) + ("" if args.data else f" ({train_size / 1000:g}k)")
    column = lambda k: f"paper {MEMN2N_PAPER_COLUMNS[k]} (1k)" if k in MEMN2N_PAPER_COLUMNS else "paper"
    headers = ["bAbI task"] + [f"{k} hop{'s' if k > 1 else ''} {who}" for k in hops_run for who in (here, column(k))]
    paper = lambda t, k: f"{MEMN2N_PAPER_ERRORS[t][k]:.1f}" if k in MEMN2N_PAPER_ERRORS[t] else "-"
    rows = [[f"{t}: {babi.TASKS[t]}"] + [cell for k in hops_run for cell in (f"{100 * errors[t, k]:.1f}", paper(t, k))]
            for t in tasks_run]
    return None, headers, rows


def run(args):
    """3 hops with PE, LS and RN on one bAbI-style task, or on several jointly; --compare: Table 1's hop columns,
    1, 2 and 3 hops, each one model trained jointly on tasks 1-3 with its column's settings, and the table."""
    if args.start is not None and args.restarts > 1:  # its model.pt holds the kept restart's model alone
        raise train.UsageError(f"{args.resume or args.eval}: a run of {args.restarts} restarts; --resume and --eval "
                               "take a single run")
    tasks = list(babi.TASKS) if args.compare else args.task
    recipe = memn2n_recipe(args, tasks)
    examples, data, vocab = memn2n_data(args, tasks, recipe.train_size)
    finished, curves = [], {}
    for hops in MEMN2N_PAPER_COLUMNS if args.compare else [args.hops]:
        variant = f"{hops} hop{'s' if hops > 1 else ''} joint" if args.compare else "memn2n"
        # --compare: the settings of the paper's column, 1 and 2 hops PE LS, 3 hops PE LS RN
        random_noise = 0.0 if args.compare and "RN" not in MEMN2N_PAPER_COLUMNS[hops] else args.random_noise
        results = memn2n_restarts(args, hops, random_noise, data, vocab, variant, recipe)
        curves[variant] = results[0][2]["losses"]
        finished += results
    shown = 2 if 2 in tasks else tasks[0]  # task 2's story, where two hops chain two facts, if it was trained
    show_memn2n_hops(args, finished[-1][4], examples["test"][shown], data["test"][shown], vocab)
    pictures.save_loss_curves(args, curves)
    return finished, [memn2n_table(args, finished, recipe.train_size)]
