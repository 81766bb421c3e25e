"""The tiny synthetic tasks that train.py trains on, one section per task.

Every generator is seeded: it takes a `numpy.random.Generator` and returns plain Python lists (or
tensors), so the same seed gives the same data on every machine. train.py draws fresh training
batches from a stream seeded by `--seed` and keeps a fixed held-out test set made from a separate
seed. Nothing is downloaded.
"""
import numpy as np
import torch

PAD, BOS, EOS = 0, 1, 2  # token ids shared by every sequence task
SPECIALS = ["<pad>", "<bos>", "<eos>"]


def pad_batch(sequences, pad=PAD):
    """Right-pad a list of token-id lists into a LongTensor [B, max_len]."""
    width = max(len(s) for s in sequences)
    out = torch.full((len(sequences), width), pad, dtype=torch.long)
    for row, seq in enumerate(sequences):
        out[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
    return out


# ---------------------------------------------------------------------------------------------
# Toy translation (transformer.py, bahdanau.py)
#
# A made-up language pair with a fixed random dictionary: every source word has one target word.
# The one grammar rule is the English -> French adjective-noun inversion ("red car" -> "voiture
# rouge"), so the alignment is diagonal with local swaps, the picture of Bahdanau et al.'s Figure 3.
# Source lengths are uniform over [min_len, max_len] so that long sentences are common enough to
# measure (Bahdanau et al.'s Figure 2: a fixed-size context vector loses long sentences).
# ---------------------------------------------------------------------------------------------

def _pseudo_words(rng, count, syllables):
    words = set()
    while len(words) < count:
        words.add("".join(rng.choice(syllables, size=rng.integers(2, 4))))
    return sorted(words)


class ToyTranslation:
    """Sentences of function words, nouns and adjective-noun pairs; targets swap each pair.

    One joint vocabulary holds the specials, the source words and the target words, so that a model
    may share its embeddings between the two languages, as Vaswani et al. do (section 3.4).
    `language_seed` fixes the dictionary; data seeds only choose sentences.
    """

    n_nouns, n_adjectives, n_function_words = 50, 15, 8

    def __init__(self, min_len=4, max_len=40, language_seed=0):
        if not 2 <= min_len <= max_len:
            raise ValueError(f"need 2 <= min_len <= max_len, got {min_len} and {max_len}")
        self.min_len, self.max_len = min_len, max_len
        rng = np.random.default_rng(language_seed)
        sizes = (self.n_nouns, self.n_adjectives, self.n_function_words)
        english = _pseudo_words(rng, sum(sizes), ["ba", "ko", "ri", "tu", "me", "sa", "lo", "ni"])
        french = _pseudo_words(rng, sum(sizes), ["zé", "qu", "ai", "on", "vé", "ju", "ré", "ou"])
        rng.shuffle(english)
        rng.shuffle(french)
        self.vocab = SPECIALS + english + french
        self.id = {word: i for i, word in enumerate(self.vocab)}
        first = len(SPECIALS)
        self.nouns = list(range(first, first + sizes[0]))
        self.adjectives = list(range(first + sizes[0], first + sizes[0] + sizes[1]))
        self.function_words = list(range(first + sizes[0] + sizes[1], first + sum(sizes)))
        # the dictionary: source id -> target id (a fixed random bijection)
        self.translate_word = dict(zip(range(first, first + sum(sizes)),
                                       first + sum(sizes) + rng.permutation(sum(sizes))))

    @property
    def vocab_size(self):
        return len(self.vocab)

    def buckets(self):
        """Source-length buckets for the per-length table: 4-10, 11-20, ..., up to max_len."""
        edges = list(range(10, self.max_len, 10)) + [self.max_len]
        lows = [self.min_len] + [e + 1 for e in edges[:-1]]
        return [(lo, hi) for lo, hi in zip(lows, edges) if lo <= hi]

    def sample(self, rng):
        """One (source ids, target ids) pair; the target has neither BOS nor EOS."""
        length = int(rng.integers(self.min_len, self.max_len + 1))
        source, target = [], []
        while len(source) < length:
            unit = rng.integers(3) if length - len(source) >= 2 else rng.integers(2)
            if unit == 0:
                word = int(rng.choice(self.function_words))
                source.append(word)
                target.append(self.translate_word[word])
            elif unit == 1:
                word = int(rng.choice(self.nouns))
                source.append(word)
                target.append(self.translate_word[word])
            else:  # adjective noun -> noun adjective
                adjective, noun = int(rng.choice(self.adjectives)), int(rng.choice(self.nouns))
                source += [adjective, noun]
                target += [self.translate_word[noun], self.translate_word[adjective]]
        return source, target

    def pairs(self, n, rng):
        return [self.sample(rng) for _ in range(n)]

    @staticmethod
    def collate(pairs):
        """src [B, S] (PAD-padded), tgt [B, T+2] = BOS target EOS (PAD-padded)."""
        src = pad_batch([s for s, _ in pairs])
        tgt = pad_batch([[BOS] + t + [EOS] for _, t in pairs])
        return src, tgt

    def batch(self, batch_size, rng):
        return self.collate(self.pairs(batch_size, rng))

    def words(self, ids):
        return [self.vocab[i] for i in ids]


# ---------------------------------------------------------------------------------------------
# bAbI-style stories (memn2n.py)
#
# Weston et al.'s bAbI tasks 1-3 (arXiv 1502.05698), regenerated from their world so that nothing is
# downloaded: four actors move between six locations and pick up and drop three objects, and every
# few statements a question asks about the state of the world. Task 1, "Where is Mary?", needs the
# actor's latest move (one supporting fact); task 2, "Where is the milk?", needs who got or dropped
# the object and where that actor was (two facts); task 3, "Where was the milk before the office?",
# needs who carried it and that actor's last two moves (three facts). Every other statement is a
# distractor. A question's memory is the statements of its story before it. Stories are written and
# read in the official text format, so `--data DIR` trains on the real files instead:
#     1 Mary moved to the bathroom.
#     2 Mary got the football there.
#     3 Where is the football? <TAB>bathroom<TAB>2 1      (answer, then the supporting line ids)
# Five questions per story; task 3's long gaps between questions make many stories longer than the
# 50-sentence memory, but every question's supporting facts are among its 50 latest statements.
# ---------------------------------------------------------------------------------------------

from typing import NamedTuple

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
    stories = []
    while n_questions > 0:
        stories.append(babi_story(task, rng, min(BABI_QUESTIONS_PER_STORY, n_questions)))
        n_questions -= BABI_QUESTIONS_PER_STORY
    return stories


def write_babi(stories):
    """The official text format: 'ID text', questions 'ID text \\tanswer\\tsupporting ids'."""
    out = []
    for story in stories:
        for i, line in enumerate(story, 1):
            if line.answer is None:
                out.append(f"{i} {line.text}")
            else:
                out.append(f"{i} {line.text} \t{line.answer}\t{' '.join(map(str, line.support))}")
    return "\n".join(out) + "\n"


def parse_babi(text):
    """Stories from the official text format; ValueError names the first bad line."""
    stories = []
    for number, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        head, _, rest = raw.strip().partition(" ")
        if not head.isdigit():
            raise ValueError(f"line {number}: expected 'ID text', got {raw!r}")
        i = int(head)
        if i == 1:
            stories.append([])
        elif not stories or i != len(stories[-1]) + 1:
            raise ValueError(f"line {number}: id {i} does not continue its story")
        story = stories[-1]
        if "\t" not in rest:
            story.append(BabiLine(rest.strip()))
            continue
        fields = rest.split("\t")
        try:
            support = tuple(int(s) for s in (fields[2].split() if len(fields) > 2 else []))
        except ValueError:
            raise ValueError(f"line {number}: supporting ids must be numbers, got {fields[2]!r}")
        if any(not 1 <= s < i or story[s - 1].answer is not None for s in support):
            raise ValueError(f"line {number}: a supporting id is not an earlier statement")
        story.append(BabiLine(fields[0].strip(), fields[1].strip(), support))
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


# ---------------------------------------------------------------------------------------------
# Multiple-instance bags with rare witnesses (hopfield.py)
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
        log_e = [torch.zeros(len(x), dtype=torch.float64)] + [torch.full((len(x),), -np.inf,
                                                                         dtype=torch.float64)] * k
        for i in range(self.bag_size):
            for j in range(k, 0, -1):
                log_e[j] = torch.logaddexp(log_e[j], log_r[:, i] + log_e[j - 1])
        log_subsets = sum(np.log(self.bag_size - j) - np.log(j + 1) for j in range(k))
        return log_e[k] - log_subsets


# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# Counting programs, flip-flop and selective copy (cope.py; Golovneva et al. 2024, section 4)
#
# Three tasks where the token to attend to is found by counting tokens of one kind, not tokens.
# Every sample is (token ids, is_target): is_target marks the tokens the model must predict (the
# answer of a program, the bit after each read, the copied tokens), and `collate_targets` turns a
# list of samples into inputs and next-token targets with -100 (ignored) everywhere else.
# Counting (section 4.3) follows the official generator: statements `x = 0 ;`, `x ++;`, `pass;`
# drawn with weights 1 / 7 / 50, an increment only of a set variable and never past 10, then
# `print x` about a set variable; the answer is x's value. A whitespace tokenizer reads it.
# Flip-flop (section 4.1, Liu et al. 2023): `w b` writes bit b, `r b` reads (b is the last written
# bit), `i b` is ignored; trained with one ignore probability, tested with fewer (dense) and more
# (sparse, the last write lies far back). Selective copy (section 4.2, Gu and Dao 2023): tokens
# scattered among blanks, then `|`, then the tokens in order; tested with fewer and more blanks.
# ---------------------------------------------------------------------------------------------

def collate_targets(samples):
    """[(ids, is_target)] -> inputs [B, T-1], targets [B, T-1] (next token where it is a target,
    -100 elsewhere); right-padded, which a causal model never sees from earlier positions."""
    ids = pad_batch([s for s, _ in samples])
    targets = pad_batch([[t if m else -100 for t, m in zip(s, mask)] for s, mask in samples], pad=-100)
    return ids[:, :-1], targets[:, 1:]


class CountingTask:
    """Programs over `n_vars` variables with `min_statements`..`max_statements` statements."""

    vocab = SPECIALS + list("abcdefghijklmnopqrstuvwxyz") + ["=", ";", "++;", "pass;", "print"] + \
        [str(v) for v in range(11)]
    weights = {"set": 1, "pass": 50, "increment": 7}   # official generator: SET 1, DUMMY 50, INCREMENT 7
    max_value = 10

    def __init__(self, n_vars=3, min_statements=3, max_statements=32):
        if not 1 <= n_vars <= 26:
            raise ValueError(f"n_vars must be in 1..26, got {n_vars}")
        if not 1 <= min_statements <= max_statements:
            raise ValueError(f"need 1 <= min_statements <= max_statements, got "
                             f"{min_statements} and {max_statements}")
        self.n_vars, self.min_statements, self.max_statements = n_vars, min_statements, max_statements
        self.id = {word: i for i, word in enumerate(self.vocab)}
        ops = list(self.weights)
        self._ops, self._p = ops, np.array([self.weights[o] for o in ops]) / sum(self.weights.values())

    @property
    def vocab_size(self):
        return len(self.vocab)

    def max_tokens(self):
        """A bound on the length of a sample: 4 tokens for the longest statement, 3 for the question."""
        return 4 * self.max_statements + 3

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

    def words(self, ids):
        return [self.vocab[i] for i in ids]


def run_program(context, variable):
    """A reference interpreter of a counting program: the value `print variable` shows."""
    values = {}
    for statement in context.replace(";", "; ").split(";"):
        words = statement.split()
        if len(words) == 3 and words[1] == "=":
            values[words[0]] = int(words[2])
        elif len(words) == 2 and words[1] == "++":
            values[words[0]] += 1
    return values[variable]


def read_counting_jsonl(path):
    """Examples of the authors' generator, one JSON object a line; ValueError says what is wrong."""
    import json
    examples = []
    try:
        with open(path) as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    example = json.loads(line)
                except json.JSONDecodeError as error:
                    raise ValueError(f"{path}:{number}: not JSON ({error.msg})")
                if not isinstance(example, dict) or not all(
                        isinstance(example.get(k), str) for k in ("context", "question", "answer")):
                    raise ValueError(f"{path}:{number}: need string fields context, question, answer")
                examples.append(example)
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error.strerror}")
    if not examples:
        raise ValueError(f"{path}: no examples")
    return examples


class FlipFlop:
    """Flip-flop strings of `length` instructions; `p_ignore` of them are `i`, the rest half `w`,
    half `r`. The first instruction is a write and the last a read, so every string has an answer."""

    vocab = SPECIALS + ["w", "r", "i", "0", "1"]

    def __init__(self, length=32, p_ignore=0.8):
        if length < 2 or not 0 <= p_ignore < 1:
            raise ValueError(f"need length >= 2 and 0 <= p_ignore < 1, got {length} and {p_ignore}")
        self.length, self.p_ignore = length, p_ignore
        self.id = {word: i for i, word in enumerate(self.vocab)}

    @property
    def vocab_size(self):
        return len(self.vocab)

    def max_tokens(self):
        return 2 * self.length

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

    def words(self, ids):
        return [self.vocab[i] for i in ids]


class SelectiveCopy:
    """`n_tokens` symbols scattered among `n_blanks` blanks `.`, then `|` and the symbols in order."""

    vocab = SPECIALS + [".", "|"] + list("ABCDEFGH")

    def __init__(self, n_tokens=8, n_blanks=16):
        if n_tokens < 1 or n_blanks < 0:
            raise ValueError(f"need n_tokens >= 1 and n_blanks >= 0, got {n_tokens} and {n_blanks}")
        self.n_tokens, self.n_blanks = n_tokens, n_blanks
        self.id = {word: i for i, word in enumerate(self.vocab)}
        self.symbols = [self.id[c] for c in "ABCDEFGH"]

    @property
    def vocab_size(self):
        return len(self.vocab)

    def max_tokens(self):
        return 2 * self.n_tokens + self.n_blanks + 1

    def sample(self, rng):
        tokens = [int(t) for t in rng.choice(self.symbols, size=self.n_tokens)]
        slots = np.sort(rng.choice(self.n_tokens + self.n_blanks, size=self.n_tokens, replace=False))
        grid = [self.id["."]] * (self.n_tokens + self.n_blanks)
        for slot, token in zip(slots, tokens):
            grid[slot] = token
        ids = grid + [self.id["|"]] + tokens
        return ids, [False] * (len(grid) + 1) + [True] * self.n_tokens

    def words(self, ids):
        return [self.vocab[i] for i in ids]


# ---------------------------------------------------------------------------------------------
# Letter blocks (mta.py): the motivating toy task of Golovneva et al. 2025, section 4.1
#
# Blocks of 5 distinct random letters joined by '.', then '#' and L query letters drawn from one
# block (the target) in random order: "dklsr.gpamz.rmzxq#ga" -> "gpamz". No other block holds all
# L query letters, though many hold one of them, so the block can only be found by matching the
# letters together: the lookup that standard attention (one query, one key) finds hard and MTA's
# key-query convolution makes easy. Blocks within a sample are distinct. The paper (and its
# generator, whose JSON-lines format {"src": ..., "tgt": ...} we read and write) uses 52 blocks.
# ---------------------------------------------------------------------------------------------

LETTERS = "abcdefghijklmnopqrstuvwxyz"
BLOCK_VOCAB = LETTERS + ".#"  # token id = index in this string


class LetterBlocks:
    """Samples (src, tgt) strings of the toy task; encodes them as token ids for a decoder."""

    vocab_size = len(BLOCK_VOCAB)

    def __init__(self, n_blocks=4, query_letters=2, block_length=5):
        if not 1 <= query_letters <= block_length <= len(LETTERS):
            raise ValueError(f"need 1 <= query letters ({query_letters}) <= block length "
                             f"({block_length}) <= {len(LETTERS)}")
        if n_blocks < 1:
            raise ValueError(f"need at least one block, got {n_blocks}")
        self.n_blocks, self.query_letters, self.block_length = n_blocks, query_letters, block_length

    def sample(self, rng):
        target = rng.permutation(len(LETTERS))[: self.block_length]
        query = set(rng.choice(target, self.query_letters, replace=False).tolist())
        query_order = rng.permutation(sorted(query)).tolist()
        blocks, seen = [target.tolist()], {tuple(target.tolist())}
        while len(blocks) < self.n_blocks:  # distractors: distinct blocks without all query letters
            candidates = np.argsort(rng.random((2 * self.n_blocks, len(LETTERS))), axis=1)
            for block in candidates[:, : self.block_length].tolist():
                if len(blocks) < self.n_blocks and not query <= set(block) and tuple(block) not in seen:
                    blocks.append(block)
                    seen.add(tuple(block))
        order = rng.permutation(self.n_blocks)
        text = ".".join("".join(LETTERS[i] for i in blocks[b]) for b in order)
        return text + "#" + "".join(LETTERS[i] for i in query_order), "".join(LETTERS[i] for i in target)

    def examples(self, n, rng):
        return [self.sample(rng) for _ in range(n)]

    @staticmethod
    def encode(text):
        return [BLOCK_VOCAB.index(ch) for ch in text]

    @staticmethod
    def collate(examples):
        """-> tokens [B, T] (src + tgt minus its last letter, right-padded with '#': a causal model
        never lets a later pad reach an earlier position), positions [B, N] where each target letter
        is predicted, targets [B, N]. Every tgt in one batch must have the same length N."""
        tokens = [LetterBlocks.encode(src + tgt[:-1]) for src, tgt in examples]
        tokens = pad_batch(tokens, pad=BLOCK_VOCAB.index("#"))
        n = len(examples[0][1])
        starts = torch.tensor([len(src) - 1 for src, _ in examples])
        positions = starts[:, None] + torch.arange(n)[None, :]
        targets = torch.tensor([LetterBlocks.encode(tgt) for _, tgt in examples])
        return tokens, positions, targets

    def batch(self, batch_size, rng):
        return self.collate(self.examples(batch_size, rng))


def read_letter_blocks(path):
    """Examples from a JSON-lines file in the authors' format; ValueError says what is wrong where."""
    import json
    examples = []
    try:
        with open(path) as f:
            lines = f.readlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read {path}: {error}")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            src, tgt = item["src"], item["tgt"]
        except (json.JSONDecodeError, TypeError, KeyError):
            raise ValueError(f"{path}:{number}: expected a JSON object with 'src' and 'tgt'")
        if not (isinstance(src, str) and isinstance(tgt, str) and src.count("#") == 1 and tgt
                and set(src) <= set(BLOCK_VOCAB) and set(tgt) <= set(LETTERS)):
            raise ValueError(f"{path}:{number}: 'src' must be letters and '.' with one '#', "
                             f"'tgt' letters a-z")
        examples.append((src, tgt))
    if not examples:
        raise ValueError(f"{path}: no examples")
    if len({len(tgt) for _, tgt in examples}) > 1:
        raise ValueError(f"{path}: every 'tgt' must have the same length")
    return examples


def write_letter_blocks(path, examples):
    import json
    with open(path, "w") as f:
        for src, tgt in examples:
            f.write(json.dumps({"src": src, "tgt": tgt}) + "\n")
