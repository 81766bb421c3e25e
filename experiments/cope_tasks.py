"""The synthetic tasks of Golovneva et al. 2024 (CoPE, section 4), drawn in batches with torch on the
training device: counting programs (4.3, the authors' generator), flip-flop (4.1) and selective copy
(4.2); the official JSON-lines format of counting programs and its checks. Used by cope_experiment.py.

Every task draws `draw(n, generator, device) -> (ids [n, W], is_target [n, W])`: token ids right-padded
with <pad> (id 0, which no task emits) and a mark on what the model must predict (the answer of a program,
the bit after each read, the copied tokens); the loss and the errors count those alone. Drawing on the
device from a seeded torch.Generator keeps runs deterministic under --seed and spares a GPU the host's
per-sample Python loop and the copy of every batch.
"""
import json

import torch
import torch.nn.functional as F

import train   # UsageError, pad_batch

# <pad> is id 0, pad_batch's pad; <bos> and <eos> are never used here, but they hold ids 1 and 2 so that
# every token id stays as it was when samples were lists
SPECIALS = ["<pad>", "<bos>", "<eos>"]
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def to_batch(ids, is_target):
    """(ids, is_target) [B, W] -> inputs [B, W-1], targets [B, W-1] (the next token where it is a
    target, -100 elsewhere). On the CPU the batch is cut to its longest row (reading a CPU tensor costs
    nothing); on an accelerator it keeps its width, so that no step waits for the device to say how
    long its batch is. Padding is on the right, which a causal model never sees from earlier positions."""
    if ids.device.type == "cpu":
        width = int((ids != 0).sum(1).max())
        ids, is_target = ids[:, :width], is_target[:, :width]
    return ids[:, :-1], torch.where(is_target, ids, -100)[:, 1:]


class Vocabulary:
    """A task's tokens: token id = index in the class's `vocab` (SPECIALS first). Each task sets
    max_tokens, the width of its draws (a bound on the length of its samples)."""

    def __init__(self):
        self.id, self.vocab_size = {word: i for i, word in enumerate(self.vocab)}, len(self.vocab)

    def words(self, ids):
        return [self.vocab[i] for i in ids if i != 0]


class CountingTask(Vocabulary):
    """Counting (section 4.3), as the official generator: over `n_vars` variables, `min_statements`..
    `max_statements` statements `x = 0 ;`, `x ++;` (only of a set variable, never past 10) or `pass;`,
    drawn with weights 1 / 7 / 50, then `print x` about a set variable; the answer is x's value.

    The official generator draws a statement and draws it again while it cannot make it (an increment
    before any set, or of a variable it picked at 10), and draws a whole program again (its length
    too) when it sets nothing. This draws the same distribution without retries, so that a batch is a
    fixed number of tensor operations: a length n with P(n) proportional to the chance that n statements
    set something, 1 - (50/51)^n (before the first set a statement is `pass;` 50 times in 51); the first
    set at statement k with P(k) proportional to (50/51)^(k-1), k <= n, `pass;` before it; after it,
    each statement from the draws that succeed: `pass;` 50, `x = 0 ;` 1/n_vars for each x, `x ++;`
    7/(set variables) for each set x below 10."""

    vocab = SPECIALS + list(LETTERS) + ["=", ";", "++;", "pass;", "print"] + [str(v) for v in range(11)]
    weights = {"set": 1, "pass": 50, "increment": 7}   # official generator: SET 1, DUMMY 50, INCREMENT 7
    max_value = 10

    def __init__(self, n_vars=3, min_statements=3, max_statements=32):
        if not (1 <= n_vars <= 26 and 1 <= min_statements <= max_statements):
            raise ValueError(f"need 1 <= n_vars {n_vars} <= 26, 1 <= statements {min_statements}..{max_statements}")
        super().__init__()
        self.n_vars, self.min_statements, self.max_statements = n_vars, min_statements, max_statements
        self.max_tokens = 4 * max_statements + 3   # 4 tokens for the longest statement, 3 for the question

    def odds(self, values):
        """values [n, n_vars] (-1: not set) -> the odds [n, 1 + 2 n_vars] of the next statement, given
        that the official generator draws it again until it can make it: `pass;` 50, `x = 0 ;` 1/n_vars
        for each x, `x ++;` 7 / (set variables) for each set x below 10."""
        w, is_set = self.weights, values >= 0
        increment = w["increment"] * (is_set & (values < self.max_value)) / is_set.sum(1, keepdim=True).clamp(min=1)
        return torch.cat([torch.full_like(increment[:, :1], w["pass"]),
                          torch.full_like(increment, w["set"] / self.n_vars), increment], 1)

    def draw(self, n, generator, device="cpu"):
        V, S, on = self.n_vars, self.max_statements, {"device": device}
        no_set = self.weights["pass"] / (self.weights["pass"] + self.weights["set"])   # before the first set
        count = torch.arange(S + 1, **on, dtype=torch.float)
        lengths = torch.multinomial(torch.where(count >= self.min_statements, 1 - no_set ** count, 0), n,
                                    replacement=True, generator=generator)
        first = torch.multinomial(torch.where(count[:S] < lengths[:, None], no_set ** count[:S], 0), 1,
                                  generator=generator)[:, 0]
        # choice c of a statement: 0 pass; 1..V set variable c-1; V+1..2V increment variable c-1-V
        letters = torch.tensor([self.id[x] for x in LETTERS[:V]], **on)
        word = lambda name: torch.full_like(letters, self.id[name])
        tokens = torch.zeros(2 * V + 1, 4, dtype=torch.long, **on)              # each choice's words
        tokens[0, 0] = self.id["pass;"]
        tokens[1:V + 1] = torch.stack([letters, word("="), word("0"), word(";")], 1)
        tokens[V + 1:, :2] = torch.stack([letters, word("++;")], 1)
        widths = torch.tensor([1] + [4] * V + [2] * V, **on)
        only_pass = (torch.arange(2 * V + 1, **on) == 0).float()
        only_set = ((torch.arange(2 * V + 1, **on) - 1).div(V, rounding_mode="floor") == 0).float()
        values = torch.full((n, V), -1, **on)                                    # -1: not set yet
        statements, statement_widths = [], []
        for s in range(S):
            odds = torch.where((s < first)[:, None], only_pass,
                               torch.where((s == first)[:, None], only_set, self.odds(values)))
            choice = torch.multinomial(odds, 1, generator=generator)[:, 0] * (s < lengths)   # 0 past the end
            made = F.one_hot(choice, 2 * V + 1)[:, 1:].bool() & (s < lengths)[:, None]
            values = torch.where(made[:, :V], 0, values) + made[:, V:]
            statements.append(tokens[choice])
            statement_widths.append(widths[choice] * (s < lengths))
        statements, statement_widths = torch.stack(statements, 1), torch.stack(statement_widths, 1)  # [n, S, 4], [n, S]
        used = torch.arange(4, **on) < statement_widths[..., None]                            # [n, S, 4]
        where = torch.where(used, used.flatten(1).cumsum(1).view_as(used) - 1, 4 * S + 3)     # 4S+3: dropped
        ids = torch.zeros(n, 4 * S + 4, dtype=torch.long, **on).scatter_(1, where.flatten(1), statements.flatten(1))
        asked = torch.multinomial((values >= 0).float(), 1, generator=generator)[:, 0]   # a set variable
        question = torch.stack([torch.full((n,), self.id["print"], **on), letters[asked],
                                values.gather(1, asked[:, None])[:, 0] + self.id["0"]], 1)
        end = statement_widths.sum(1, keepdim=True)
        ids = ids.scatter_(1, end + torch.arange(3, **on), question)[:, :-1]
        return ids, torch.arange(4 * S + 3, **on) == end + 2     # the answer alone is a target

    def encode(self, example):
        """An official-format program {"context", "question", "answer"} -> (ids, is_target) lists."""
        words = " ".join([example["context"], example["question"], example["answer"]]).lower().split()
        unknown = sorted({w for w in words if w not in self.id})
        if unknown:
            raise ValueError(f"unknown tokens {unknown[:5]}")
        return [self.id[w] for w in words], [False] * (len(words) - 1) + [True]

    def decode(self, ids):
        """A drawn program's ids -> the official format {"context", "question", "answer"}."""
        words = self.words(ids)
        return {"context": " ".join(words[:-3]), "question": " ".join(words[-3:-1]), "answer": words[-1]}


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


def read_programs(task, path):
    """--data / --eval-data: the programs of a file of the official generator (one JSON object a line),
    checked and encoded -> (ids, is_target) [lines, longest]; UsageError names the line (bytes that are
    not UTF-8: unknown tokens)."""
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
    return train.pad_batch([ids for ids, _ in samples]), train.pad_batch([mask for _, mask in samples]).bool()


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

    def draw(self, n, generator, device="cpu"):
        p_rw = (1 - self.p_ignore) / 2
        odds = torch.tensor([self.p_ignore, p_rw, p_rw], device=device)   # i, w, r
        kind = torch.multinomial(odds, n * self.length, replacement=True, generator=generator).view(n, -1)
        kind[:, 0], kind[:, -1] = 1, 2                                       # w first, r last
        bits = torch.randint(2, (n, self.length), generator=generator, device=device)
        at = torch.arange(self.length, device=device)
        last_write = torch.where(kind == 1, at, 0).cummax(1).values       # a read's last write
        bits = torch.where(kind == 2, bits.gather(1, last_write), bits)
        instruction = torch.tensor([self.id[x] for x in "iwr"], device=device)[kind]
        ids = torch.stack([instruction, bits + self.id["0"]], 2).flatten(1)
        return ids, torch.stack([torch.zeros_like(kind, dtype=torch.bool), kind == 2], 2).flatten(1)


class SelectiveCopy(Vocabulary):
    """Selective copy (section 4.2, Gu and Dao 2023): `n_tokens` symbols scattered among `n_blanks`
    blanks `.`, then `|` and the symbols in order; tested with fewer and more blanks."""

    vocab = SPECIALS + [".", "|"] + list("ABCDEFGH")

    def __init__(self, n_tokens=8, n_blanks=16):
        if n_tokens < 1 or n_blanks < 0:
            raise ValueError(f"need n_tokens >= 1 and n_blanks >= 0, got {n_tokens} and {n_blanks}")
        super().__init__()
        self.n_tokens, self.n_blanks = n_tokens, n_blanks
        self.max_tokens = 2 * n_tokens + n_blanks + 1

    def draw(self, n, generator, device="cpu"):
        k, slots = self.n_tokens, self.n_tokens + self.n_blanks
        symbols = torch.randint(8, (n, k), generator=generator, device=device) + self.id["A"]
        where = torch.rand(n, slots, generator=generator, device=device).argsort(1)[:, :k].sort(1).values
        grid = torch.full((n, slots), self.id["."], device=device).scatter_(1, where, symbols)
        ids = torch.cat([grid, torch.full((n, 1), self.id["|"], device=device), symbols], 1)
        return ids, torch.arange(ids.shape[1], device=device).expand(n, -1) > slots
