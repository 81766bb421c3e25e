"""End-To-End Memory Networks (Sukhbaatar et al. 2015): the experiment behind `python train.py memn2n`.

A MemN2N with 3 hops, position encoding (PE), linear start (LS) and random noise (RN) answers the questions
of one bAbI-style task, trained the paper's way (section 4.2), then shows a test story with each hop's
attention (Figure 2). Several hops chain facts that one cannot: --compare trains 1, 2 and 3 hops on tasks
1-3 beside the paper's Table 1. --data DIR trains and tests on the real bAbI files instead."""
import glob
import os
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

import memn2n                     # the model: the root file memn2n.py
import train                      # the shared loop, result line and command line
from experiments import pictures  # terminal and PNG pictures

SUMMARY = "Sukhbaatar et al. 2015: End-To-End Memory Network on bAbI-style stories"

# ---------------------------------------------------------------------------------------------
# The task: bAbI-style stories. Weston et al.'s bAbI tasks 1-3 (arXiv 1502.05698), regenerated from
# their world: four actors move between six locations and pick up and drop three objects, and every few
# statements a question asks about the world. Task 1, "Where is Mary?", needs the actor's latest move (one
# supporting fact); task 2, "Where is the milk?", who got or dropped it and where that actor was (two);
# task 3, "Where was the milk before the office?", who carried it and that actor's last two moves (three).
# Every other statement is a distractor; a question's memory is the statements of its story before it.
# Five questions a story, each with its supporting facts among its 50 latest statements. The official
# text format (--data DIR reads the real files):
#     1 Mary moved to the bathroom.
#     2 Mary got the football there.
#     3 Where is the football? <TAB>bathroom<TAB>2 1      (answer, then the supporting line ids)
# ---------------------------------------------------------------------------------------------

BABI_ACTORS = ("John", "Mary", "Sandra", "Daniel")
BABI_LOCATIONS = ("bedroom", "kitchen", "garden", "hallway", "bathroom", "office")
BABI_OBJECTS = ("apple", "football", "milk")
BABI_MOVE = ("moved to", "went to", "went back to", "journeyed to", "travelled to")
BABI_GET = ("got", "grabbed", "picked up", "took")
BABI_DROP = ("dropped", "discarded", "put down", "left")
BABI_TASKS = {1: "single-supporting-fact", 2: "two-supporting-facts", 3: "three-supporting-facts"}
BABI_GAP = {1: (2, 2), 2: (1, 6), 3: (4, 20)}  # statements before each question (task 1: as the real data)
BABI_QUESTIONS_PER_STORY = 5
BABI_MEMORY = 50  # supporting facts are always among a question's 50 latest statements
BABI_NULL = "<nil>"
# bounds on --data files, far above the real ones', so that a wrong file is refused at once
BABI_MAX_LINE, BABI_MAX_WORDS, BABI_MAX_STORY = 1000, 50, 1000


class BabiLine(NamedTuple):
    text: str               # "Mary got the milk there." or "Where is the milk?"
    answer: str = None      # None for a statement
    support: tuple = ()     # the supporting statements' line ids (1-based, within the story)


class BabiExample(NamedTuple):
    memory: list            # the statements before the question, oldest first, as word lists
    question: list          # word list
    answer: str
    support: list           # indices into memory


class _BabiWorld:
    """The world a story has told so far, with the line that established each fact."""

    def __init__(self, task, rng):
        self.task, self.rng, self.lines = task, rng, []
        self.place = {}    # actor -> (location, line of the move that put them there)
        self.holder = {}   # object -> (actor, line where they got it)
        self.lying = {}    # object -> (location, drop line, the dropper's move line)
        self.carried = {}  # object -> (from, to, support): its latest carried move

    def pick(self, options):
        return options[int(self.rng.integers(len(options)))]

    def say(self, text):
        self.lines.append(BabiLine(text))
        return len(self.lines)

    def move(self):
        actor = self.pick(BABI_ACTORS)
        here, moved_at = self.place.get(actor, (None, None))
        there = self.pick([loc for loc in BABI_LOCATIONS if loc != here])
        line = self.say(f"{actor} {self.pick(BABI_MOVE)} the {there}.")
        for obj, (who, got_at) in self.holder.items():
            if who == actor:  # the object travels with its carrier
                self.carried[obj] = (here, there, (got_at, moved_at, line))
        self.place[actor] = (there, line)

    def get(self):
        here = {actor: location for actor, (location, _) in self.place.items()}
        options = [(actor, obj) for actor in BABI_ACTORS if actor in here for obj in BABI_OBJECTS
                   if obj not in self.holder and self.lying.get(obj, (here[actor],))[0] == here[actor]]
        if not options:
            return self.move()
        actor, obj = self.pick(options)
        there = " there" if self.rng.random() < 0.5 else ""
        self.holder[obj] = (actor, self.say(f"{actor} {self.pick(BABI_GET)} the {obj}{there}."))
        self.lying.pop(obj, None)

    def drop(self):
        if not self.holder:
            return self.move()
        obj = self.pick(sorted(self.holder))
        actor, _ = self.holder.pop(obj)
        there = " there" if self.rng.random() < 0.5 else ""
        line = self.say(f"{actor} {self.pick(BABI_DROP)} the {obj}{there}.")
        location, moved_at = self.place[actor]
        self.lying[obj] = (location, line, moved_at)

    def event(self):
        if self.task == 1:
            return self.move()
        r = self.rng.random()
        return self.move() if r < 0.5 else self.get() if r < 0.75 else self.drop()

    def questions(self):
        """Every question the story can answer now: (text, answer, supporting line ids)."""
        if self.task == 1:
            found = [(f"Where is {a}?", loc, (line,)) for a, (loc, line) in self.place.items()]
        elif self.task == 2:
            found = [(f"Where is the {obj}?", self.place[actor][0], (got_at, self.place[actor][1]))
                     for obj, (actor, got_at) in self.holder.items()]
            found += [(f"Where is the {obj}?", loc, (dropped_at, moved_at))
                      for obj, (loc, dropped_at, moved_at) in self.lying.items()]
        else:
            found = [(f"Where was the {obj} before the {to}?", frm, support)
                     for obj, (frm, to, support) in self.carried.items()]
        statements = [i for i, line in enumerate(self.lines, 1) if line.answer is None]
        window = set(statements[-BABI_MEMORY:])
        return [q for q in found if set(q[2]) <= window]


def babi_story(task, rng, n_questions=BABI_QUESTIONS_PER_STORY):
    """One story of bAbI task 1, 2 or 3: a list of BabiLine, statements and questions."""
    if task not in BABI_TASKS:
        raise ValueError(f"bAbI task must be one of {sorted(BABI_TASKS)}, got {task}")
    world = _BabiWorld(task, rng)
    lo, hi = BABI_GAP[task]
    for _ in range(n_questions):
        for _ in range(int(rng.integers(lo, hi + 1))):
            world.event()
        while not (options := world.questions()):
            world.event()
        world.lines.append(BabiLine(*world.pick(options)))
    return world.lines


def babi_stories(task, n_questions, rng):
    """Stories holding n_questions questions in all (bAbI's sizes: 1000 or 10000 per split)."""
    return [babi_story(task, rng, min(BABI_QUESTIONS_PER_STORY, n_questions - done))
            for done in range(0, n_questions, BABI_QUESTIONS_PER_STORY)]


def write_babi(stories):
    """The official text format: 'ID text', questions 'ID text \\tanswer\\tsupporting ids'."""
    lines = [f"{i} {line.text}" if line.answer is None else
             f"{i} {line.text} \t{line.answer}\t{' '.join(map(str, line.support))}"
             for story in stories for i, line in enumerate(story, 1)]
    return "\n".join(lines) + "\n"


def parse_babi(text, name="text"):
    """Stories from the official text format; train.UsageError names the first bad line: name:line."""
    stories = []
    for number, raw in enumerate(text.splitlines(), 1):
        bad = lambda why: train.UsageError(f"{name}:{number}: {why}")
        if len(raw) > BABI_MAX_LINE:
            raise bad(f"a line of {len(raw):,} characters (at most {BABI_MAX_LINE:,})")
        head, _, rest = raw.strip().partition(" ")
        if not head.isdigit() or not rest.strip():
            raise bad(f"expected 'ID text', got {raw[:80]!r}")
        i = int(head)
        if i == 1:
            stories.append([])
        elif not stories or i != len(stories[-1]) + 1:
            raise bad(f"id {i} does not continue its story")
        elif i > BABI_MAX_STORY:
            raise bad(f"a story longer than {BABI_MAX_STORY} lines")
        story = stories[-1]
        if "\t" not in rest:
            story.append(BabiLine(rest.strip()))
        else:
            fields = [field.strip() for field in rest.split("\t")]
            if len(fields) != 3 or not fields[0] or not fields[1] or len(fields[1].split()) > 1:
                raise bad("expected 'ID question<TAB>one-word answer<TAB>supporting ids'")
            if i == 1:
                raise bad("a story opens with a question: there is nothing to answer it from")
            if not fields[2] or not all(s.isdigit() for s in fields[2].split()):
                raise bad(f"supporting ids must be line numbers, got {fields[2]!r}")
            support = tuple(int(s) for s in fields[2].split())
            if any(not 1 <= s < i or story[s - 1].answer is not None for s in support):
                raise bad("a supporting id is not an earlier statement of the story")
            story.append(BabiLine(fields[0], fields[1], support))
        if len(babi_words(story[-1].text)) > BABI_MAX_WORDS:
            raise bad(f"more than {BABI_MAX_WORDS} words in a sentence")
    return stories


def babi_words(text):
    return text.lower().replace(".", " ").replace("?", " ").split()


def babi_examples(stories):
    """One BabiExample per question."""
    examples = []
    for story in stories:
        memory, index = [], {}
        for i, line in enumerate(story, 1):
            if line.answer is None:
                index[i] = len(memory)
                memory.append(babi_words(line.text))
            else:
                examples.append(BabiExample(list(memory), babi_words(line.text), line.answer.lower(),
                                            [index[s] for s in line.support]))
    return examples


def babi_vocab(*example_lists):
    """Every word of the examples, sorted, after the null word (id 0)."""
    words = {w for examples in example_lists for e in examples
             for w in [*e.question, e.answer, *(w for s in e.memory for w in s)]}
    return [BABI_NULL] + sorted(words)


def babi_tensors(examples, vocab, memory_size=BABI_MEMORY):
    """story [N, M, J] (the memory_size latest statements, oldest first, null rows after), query
    [N, J] and answer [N] as word ids. Unknown words map to the null word."""
    ids = {w: i for i, w in enumerate(vocab)}
    memories = [e.memory[-memory_size:] for e in examples]
    M = max(1, max(len(m) for m in memories))
    J = max([len(e.question) for e in examples] + [len(s) for m in memories for s in m])
    story = np.zeros((len(examples), M, J), dtype=np.int64)
    query = np.zeros((len(examples), J), dtype=np.int64)
    for n, (e, memory) in enumerate(zip(examples, memories)):
        for i, sentence in enumerate(memory):
            story[n, i, : len(sentence)] = [ids.get(w, 0) for w in sentence]
        query[n, : len(e.question)] = [ids.get(w, 0) for w in e.question]
    answer = torch.tensor([ids.get(e.answer, 0) for e in examples])
    return torch.from_numpy(story), torch.from_numpy(query), answer


def memn2n_read(folder, task, split):
    """The examples of the real bAbI file qa{task}_*_{split}.txt under folder."""
    names = sorted(glob.glob(os.path.join(glob.escape(folder), f"qa{task}_*_{split}.txt")))
    if not names:
        raise train.UsageError(f"--data {folder}: no file qa{task}_*_{split}.txt there")
    path = names[0]
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as error:
        raise train.UsageError(f"--data: cannot read {path}: {error}")
    examples = babi_examples(parse_babi(text, path))
    if not examples:
        raise train.UsageError(f"--data: {path} holds no questions")
    return examples


def memn2n_data(args, task, train_size):
    """Train / validation / test examples and tensors: train_size questions from --seed and the test set
    from TEST_SEED, or the files under --data. As the paper, the last 10% of training is the validation set."""
    if args.data:
        train_examples, test_examples = (memn2n_read(args.data, task, split) for split in ("train", "test"))
    else:
        generate = lambda n, seed: babi_examples(babi_stories(task, n, np.random.default_rng(seed)))
        train_examples, test_examples = generate(train_size, args.seed), generate(args.test_size, train.TEST_SEED)
    if len(train_examples) < 10:
        raise train.UsageError(f"need at least 10 training questions, got {len(train_examples)}")
    held = len(train_examples) // 10
    examples = {"train": train_examples[:-held], "val": train_examples[-held:], "test": test_examples}
    vocab = babi_vocab(train_examples, test_examples)
    tensors = {split: [t.to(args.device) for t in babi_tensors(e, vocab, args.memory_size)]
               for split, e in examples.items()}
    return examples, tensors, vocab


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------

# Table 1 (bAbI 1k, test error %), the columns that vary the hops, trained jointly on the 20 tasks
# (here: one task at a time): hops -> the column's settings, and task -> hops -> %
MEMN2N_PAPER_COLUMNS = {1: "PE LS", 2: "PE LS", 3: "PE LS RN"}
MEMN2N_PAPER_ERRORS = {1: {1: 0.8, 2: 0.0, 3: 0.0}, 2: {1: 62.0, 2: 15.6, 3: 11.4},
                       3: {1: 76.9, 2: 31.6, 3: 21.9}}
# The official code's schedule (config_babi.m, train.m, train_linear_start.m): LS lasts 20 epochs,
# then the schedule restarts; the lr is halved at the start of every 25th epoch
MEMN2N_LS_EPOCHS, MEMN2N_HALVING_EPOCHS = 20, 25


def add_flags(p):
    train.add_shared_flags(p, steps="--ls-epochs + --epochs epochs", batch_size=32, lr=0.01,
                           eval_every="one epoch",
                           lr_help="SGD learning rate for the loss summed over a batch (paper: 0.01; "
                                   "with linear start half of it, in both phases, as the official code)")
    p.add_argument("--task", type=int, choices=[1, 2, 3], default=2,
                   help="bAbI task: 1 single, 2 two, 3 three supporting facts")
    p.add_argument("--hops", type=train.int_in(1, 20), default=3, help="memory hops K (paper: 3)")
    p.add_argument("--tying", choices=["adjacent", "layerwise"], default="adjacent",
                   help="weight tying across hops (section 2.2)")
    p.add_argument("--encoding", choices=["pe", "bow"], default="pe",
                   help="sentence representation: position encoding or bag of words (section 4.1)")
    p.add_argument("--no-linear-start", dest="linear_start", action="store_false",
                   help="turn linear start off: softmax in every hop from the start (default: LS on)")
    p.add_argument("--ls-epochs", type=train.int_in(1, 1000), default=MEMN2N_LS_EPOCHS,
                   help="epochs of linear start, before the softmax comes back (official code: 20)")
    p.add_argument("--random-noise", type=train.float_in(0, 1), default=0.1,
                   help="RN: blank time slots, a share of a story's sentences, inserted at training time "
                        "(0: off; --compare: on 3 hops only, as Table 1)")
    p.add_argument("--dim", type=train.int_in(1, 1024), default=20, help="embedding size d (paper: 20)")
    p.add_argument("--memory-size", type=train.int_in(1, 200), default=50,
                   help="most recent sentences kept (paper: 50)")
    p.add_argument("--train-size", type=train.int_in(10, 100_000),
                   help="generated training questions, 10%% held out for validation (bAbI: 1000 or 10000; "
                        "default 10000, 1000 with --compare as the paper's Table 1)")
    p.add_argument("--test-size", type=train.int_in(1, 100_000), default=1000,
                   help="generated test questions (bAbI: 1000)")
    p.add_argument("--epochs", type=train.int_in(1, 1000),
                   help="epochs after linear start (paper: 100; default 40, 100 with --compare)")
    p.add_argument("--target-error", type=train.float_in(0, 1),
                   help="validation error at which training stops early, once linear start is over "
                        "(default 0.03; with --compare none: all epochs, as the paper)")
    p.add_argument("--data", metavar="DIR",
                   help="train and test on the real bAbI files qaN_*_train.txt / qaN_*_test.txt in DIR")


def memn2n_schedule(step, per_epoch, ls_epochs, lr):
    """(learning rate, LS on?) at step 1, 2, ..., as the official code: LS (ls_epochs > 0) at a constant lr / 2
    (its halving, at epoch 21, never comes in 20), then the schedule restarts at lr / 2 with the softmax
    (without LS: at lr), halved at the start of epochs 25, 50, 75, ... (train.m: `if mod(ep, 25) == 0`)."""
    ls_steps = ls_epochs * per_epoch
    if step <= ls_steps:
        return lr / 2, True
    epoch = (step - ls_steps - 1) // per_epoch + 1  # 1, 2, ... within the phase
    return (lr / 2 if ls_epochs else lr) * 0.5 ** (epoch // MEMN2N_HALVING_EPOCHS), False


def memn2n_scores(model, data, batch_size=500):
    """(mean loss, error rate) over story, query, answer tensors."""
    story, query, answer = data
    loss, wrong = 0.0, 0
    for i in range(0, len(answer), batch_size):
        logits = model(story[i:i + batch_size], query[i:i + batch_size])
        loss += F.cross_entropy(logits, answer[i:i + batch_size], reduction="sum").item()
        wrong += (logits.argmax(-1) != answer[i:i + batch_size]).sum().item()
    return loss / len(answer), wrong / len(answer)


def memn2n_train_one(args, task, hops, random_noise, data, vocab, label, epochs, target_error):
    """One MemN2N trained the paper's way (section 4.2) on one task; returns (run, metrics, model).
    target_error None: no early stop."""
    rng = train.seed_everything(args.seed)
    config = memn2n.MemN2NConfig(len(vocab), d=args.dim, hops=hops, memory_size=args.memory_size,
                                 tying=args.tying, encoding=args.encoding, random_noise=random_noise)
    model = memn2n.MemN2N(config).to(args.device)
    model.vocab = vocab  # the words behind the ids: a checkpoint needs them to be read again
    model.linear_start = args.linear_start
    story, query, answer = data["train"]
    sentences = (story != 0).any(-1).sum(1)
    n = len(answer)
    batch_size = min(args.batch_size, n)
    per_epoch = n // batch_size
    ls_epochs = args.ls_epochs if args.linear_start else 0
    steps = getattr(args, "steps", None) or (ls_epochs + epochs) * per_epoch
    eval_every = getattr(args, "eval_every", None) or per_epoch
    print(f"[{label}] bAbI task {task} ({BABI_TASKS[task]}), {hops} hops, {train.count_parameters(model):,} "
          f"parameters; {n} training / {len(data['val'][2])} validation / {len(data['test'][2])} test "
          f"questions; {steps} steps of {batch_size} ({per_epoch} steps an epoch)")

    def epoch_batches():  # every training question once an epoch, in a fresh order
        while True:
            order = torch.from_numpy(rng.permutation(n)).to(args.device)
            for i in range(per_epoch):
                chosen = order[i * batch_size:(i + 1) * batch_size]
                width = int(sentences[chosen].max())  # slots that are padding in the whole batch only cost time
                yield story[chosen, :width], query[chosen], answer[chosen]

    batches = epoch_batches()

    # Section 4.2 and the official code (memn2n_schedule, which also ends LS). The paper sums the loss over
    # the batch; we average it, so the step is lr x batch size and the norm clip 40 / batch size: the same.
    def lr_at(step):
        lr, linear_start = memn2n_schedule(step, per_epoch, ls_epochs, args.lr)
        if model.linear_start and not linear_start:
            print(f"[{label}] step {step}: linear start over, softmax back in every hop")
        model.linear_start = linear_start
        return lr * batch_size

    def evaluate(model):
        val_loss, val_error = memn2n_scores(model, data["val"])
        return {"val_loss": val_loss, "val_error": val_error, "test_error": memn2n_scores(model, data["test"])[1]}

    run = train.training_loop(
        model, torch.optim.SGD(model.parameters(), lr=args.lr), lambda: next(batches),
        lambda m, batch: F.cross_entropy(m(*batch[:2]), batch[2]), evaluate,
        solved=lambda m: target_error is not None and not model.linear_start and m["val_error"] <= target_error,
        steps=steps, eval_every=eval_every, lr_at=lr_at, clip=40 / batch_size, label=label,
        **train.settings(args, f"babi-task{task}", label, vocab))
    model.eval()
    with torch.no_grad():
        test_loss, test_error = memn2n_scores(model, data["test"])
        val_error = memn2n_scores(model, data["val"])[1]
    print(f"[{label}] test error {100 * test_error:.1f}% (paper, Table 1 at 1k: "
          f"{MEMN2N_PAPER_ERRORS[task].get(hops, '-')}%)")
    metrics = {"test_error": round(test_error, 4), "test_loss": round(test_loss, 4),
               "val_error": round(val_error, 4), "final_loss": round(run["losses"][-1], 4),
               "hops": hops, "parameters": train.count_parameters(model), "training_questions": n}
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
    here = "here" if args.data else f"here ({train_size / 1000:g}k)"
    column = lambda k: f"paper {MEMN2N_PAPER_COLUMNS[k]} (1k)" if k in MEMN2N_PAPER_COLUMNS else "paper"
    headers = ["bAbI task"] + [f"{k} hop{'s' if k > 1 else ''} {who}" for k in hops_run for who in (here, column(k))]
    paper = lambda t, k: f"{MEMN2N_PAPER_ERRORS[t][k]:.1f}" if k in MEMN2N_PAPER_ERRORS[t] else "-"
    rows = [[f"{t}: {BABI_TASKS[t]}"] + [cell for k in hops_run for cell in (f"{100 * errors[t, k]:.1f}", paper(t, k))]
            for t in tasks_run]
    return None, headers, rows


def run(args):
    """3 hops with PE, LS and RN on one bAbI-style task; --compare: 1, 2 and 3 hops on tasks 1-3, each with its
    Table 1 column's settings (RN on 3 hops only) for all its epochs, and the table beside the paper's."""
    train_size = args.train_size or (1000 if args.compare else 10000)
    epochs = args.epochs or (100 if args.compare else 40)
    # None: no early stop (--compare trains every run for all its epochs, as the paper)
    target_error = 0.03 if args.target_error is None and not args.compare else args.target_error
    plan = [(t, k) for t in (1, 2, 3) for k in (1, 2, 3)] if args.compare else [(args.task, args.hops)]
    finished, curves, shown = [], {}, None
    for task in sorted({t for t, _ in plan}):
        examples, data, vocab = memn2n_data(args, task, train_size)
        for _, hops in (p for p in plan if p[0] == task):
            variant = f"task {task}, {hops} hop{'s' if hops > 1 else ''}" if args.compare else "memn2n"
            # --compare: the settings of the paper's column, 1 and 2 hops PE LS, 3 hops PE LS RN
            random_noise = 0.0 if args.compare and "RN" not in MEMN2N_PAPER_COLUMNS[hops] else args.random_noise
            run, metrics, model = memn2n_train_one(args, task, hops, random_noise, data, vocab, variant,
                                                   epochs, target_error)
            curves[variant] = run["losses"]
            finished.append((f"babi-task{task}", variant, run, metrics, model))
            if hops == max(k for _, k in plan) and (task == args.task or shown is None):
                shown = (model, examples["test"], data["test"], vocab)
    show_memn2n_hops(args, *shown)
    pictures.save_loss_curves(args, curves)
    return finished, [memn2n_table(args, finished, train_size)]
