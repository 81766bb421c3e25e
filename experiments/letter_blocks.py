"""The letter-block toy task of Golovneva et al. 2025 (Multi-Token Attention, section 4.1), drawn in
batches with torch on the training device, and the authors' JSON-lines files of it with their checks.
Used by mta_experiment.py.

Blocks of 5 distinct random letters joined by '.', then '#' and L query letters drawn from one block
(the target) in random order: "dklsr.gpamz.rmzxq#ga" -> "gpamz". No other block holds all L query
letters, though many hold one of them, so the block can only be found by matching the letters
together: the lookup that standard attention (one query, one key) finds hard and MTA's key-query
convolution makes easy. Blocks within a sample are distinct. The paper (and the authors' generator,
facebookresearch/RAM projects/mta/toy_task/generate_data.py, whose JSON-lines format
{"src": ..., "tgt": ...} we read and write) uses 52 blocks. A data file must keep the same rules; a
line that breaks one is refused with its number.
"""
import json
import math

import numpy as np
import torch

LETTERS = "abcdefghijklmnopqrstuvwxyz"
BLOCK_VOCAB = LETTERS + ".#"  # token id = index in this string
CODES = np.zeros(256, np.uint8)  # ASCII code -> token id
CODES[[ord(ch) for ch in BLOCK_VOCAB]] = np.arange(len(BLOCK_VOCAB))
MAX_LENGTH = 1024             # longest example (src + tgt) we generate or read; the paper's is 319
MAX_LINE = 4 * MAX_LENGTH     # longest line of a data file (a JSON object holding such an example)


def distractor_blocks(block_length, query_letters):
    """How many distinct blocks (ordered, letters distinct) miss at least one of L given query
    letters: all N-letter arrangements minus those holding the L letters and N - L others."""
    N, L = block_length, query_letters
    return math.perm(len(LETTERS), N) - math.comb(len(LETTERS) - L, N - L) * math.factorial(N)


class LetterBlocks:
    """Samples (src, tgt) strings of the toy task; encodes them as token ids for a decoder."""

    vocab_size = len(BLOCK_VOCAB)

    def __init__(self, n_blocks=2, query_letters=2, block_length=5):
        if not 1 <= query_letters <= block_length <= len(LETTERS):
            raise ValueError(f"need 1 <= query letters ({query_letters}) <= block length "
                             f"({block_length}) <= {len(LETTERS)}")
        if n_blocks < 1:
            raise ValueError(f"need at least one block, got {n_blocks}")
        # the rejection sampler below would need an endless stream without enough distinct
        # distractors (e.g. 26-letter blocks: every one holds every query letter)
        if n_blocks - 1 > distractor_blocks(block_length, query_letters):
            raise ValueError(f"{n_blocks} blocks of {block_length} letters with {query_letters} query letters: "
                             f"only {distractor_blocks(block_length, query_letters)} distinct distractor "
                             f"blocks miss a query letter, {n_blocks - 1} needed")
        length = n_blocks * (block_length + 1) + query_letters + block_length
        if length > MAX_LENGTH:
            raise ValueError(f"{n_blocks} blocks of {block_length} letters make examples of {length} "
                             f"characters, more than {MAX_LENGTH}")
        self.n_blocks, self.query_letters, self.block_length = n_blocks, query_letters, block_length
        self.stream = stream_length(n_blocks, query_letters, block_length)

    def draw(self, n, generator, device="cpu"):
        """n fresh samples drawn with torch on `device` (no host work, no host read) -> tokens [n, T]
        (src + tgt minus its last letter), positions [n, N] where each target letter is predicted,
        targets [n, N]. As the authors' generator: target = N distinct letters, query = L of them in
        random order, distractors = blocks drawn alike and rejected when they hold every query letter
        or repeat a block, then all blocks shuffled. The rejection runs over a fixed stream of
        self.stream candidates a sample: the first n_blocks - 1 kept are exactly what the sequential
        sampler keeps, and the stream is long enough that it keeps too few (a rejected block would
        then stand in) with chance < 1e-15 a sample."""
        N, L, S, M = self.block_length, self.query_letters, self.n_blocks - 1, self.stream
        # k of m things, distinct, in random order: the k largest of m uniform numbers (float64: ties
        # have chance ~1e-15)
        pick = lambda k, *shape: torch.rand(*shape, generator=generator, device=device,
                                            dtype=torch.float64).topk(k).indices
        target = pick(N, n, len(LETTERS))                                       # [n, N]
        query = target.gather(1, pick(L, n, N))                                 # [n, L]
        candidates = pick(N, n, M, len(LETTERS))                                # [n, M, N]
        holds_all = (candidates[..., None] == query[:, None, None, :]).any(2).all(-1)
        same = (candidates[:, :, None] == candidates[:, None, :]).all(-1)  # [n, M, M]
        seen = same.tril(-1).any(-1)  # the same block earlier in the stream (the target holds all L)
        kept = ~holds_all & ~seen
        stream_order = torch.arange(M, device=device) + M * (~kept)           # kept ones first
        first_kept = stream_order.topk(S, largest=False).indices
        blocks = torch.cat([target[:, None], candidates.gather(1, first_kept[..., None].expand(-1, -1, N))], 1)
        order = pick(S + 1, n, S + 1)
        blocks = blocks.gather(1, order[..., None].expand(-1, -1, N))
        dots = torch.full((n, S + 1, 1), BLOCK_VOCAB.index("."), device=device)
        text = torch.cat([blocks, dots], 2).flatten(1)
        text[:, -1] = BLOCK_VOCAB.index("#")                                  # the last '.' is the '#'
        tokens = torch.cat([text, query, target[:, :-1]], 1)
        positions = (text.size(1) + L - 1 + torch.arange(N, device=device)).expand(n, N)
        return tokens, positions, target

    def examples(self, n, generator):
        """n samples as (src, tgt) strings, drawn on the CPU from a torch.Generator."""
        tokens, _, targets = self.draw(n, generator)
        src_length = tokens.size(1) - self.block_length + 1
        return [("".join(BLOCK_VOCAB[t] for t in row[:src_length]), "".join(LETTERS[t] for t in target))
                for row, target in zip(tokens.tolist(), targets.tolist())]

    @staticmethod
    def encode(text):
        return [BLOCK_VOCAB.index(ch) for ch in text]

    @staticmethod
    def collate(examples):
        """-> tokens [B, T] as uint8 (src + tgt minus its last letter, right-padded with '#': a causal
        model never lets a later pad reach an earlier position), positions [B, N] where each target
        letter is predicted, targets [B, N]. Every tgt must have the same length N. uint8 keeps a
        file of a million examples small; the model takes tokens.long()."""
        width = max(len(src) + len(tgt) for src, tgt in examples)
        text = "".join((src + tgt).ljust(width, "#") for src, tgt in examples).encode("ascii")
        full = torch.from_numpy(CODES[np.frombuffer(text, np.uint8)].reshape(len(examples), width))
        starts = torch.tensor([len(src) - 1 for src, _ in examples])
        positions = starts[:, None] + torch.arange(len(examples[0][1]))
        return full[:, :-1], positions, full.gather(1, positions + 1).long()


def stream_length(n_blocks, query_letters, block_length, chance=1e-15):
    """Candidates a sample needs so that n_blocks - 1 distinct distractors are kept except with
    `chance`: after j are kept, a candidate is kept with p_j = (distractors - j) / all blocks, so the
    number kept is a Markov chain whose law we follow candidate by candidate."""
    wanted = n_blocks - 1
    blocks, distractors = math.perm(len(LETTERS), block_length), distractor_blocks(block_length, query_letters)
    p = np.array([(distractors - j) / blocks for j in range(wanted)])
    law, length = np.zeros(wanted + 1), 0  # law[j]: chance that j are kept so far
    law[0] = 1.0
    while law[:wanted].sum() > chance:
        moved = law[:wanted] * p
        law[:wanted] -= moved
        law[1:] += moved
        length += 1
    return length


def check_example(item):
    """The task's rules for one parsed JSON line -> (src, tgt), or ValueError saying which is broken."""
    if not (isinstance(item, dict) and isinstance(item.get("src"), str) and isinstance(item.get("tgt"), str)):
        raise ValueError("expected a JSON object with string fields 'src' and 'tgt'")
    src, tgt = item["src"], item["tgt"]
    if src.count("#") != 1 or not set(src) <= set(BLOCK_VOCAB):
        raise ValueError("'src' must be letters a-z and '.' with one '#' before the query")
    text, query = src.split("#")
    blocks = text.split(".")
    if not tgt or not set(tgt) <= set(LETTERS):
        raise ValueError("'tgt' must be letters a-z")
    if not query or len(set(query)) != len(query):
        raise ValueError(f"the query {query!r} must be one or more distinct letters")
    if len(src) + len(tgt) > MAX_LENGTH:
        raise ValueError(f"example of {len(src) + len(tgt)} characters, more than {MAX_LENGTH}")
    if any(len(block) != len(tgt) for block in blocks):
        raise ValueError(f"'tgt' has {len(tgt)} letters but not every block of 'src' has")
    if any(len(set(block)) != len(block) for block in blocks) or len(set(blocks)) != len(blocks):
        raise ValueError("the letters of a block and the blocks of 'src' must be distinct")
    if tgt not in blocks:
        raise ValueError(f"'tgt' {tgt!r} is not a block of 'src'")
    if not set(query) <= set(tgt):
        raise ValueError(f"the query {query!r} has letters that are not in 'tgt' {tgt!r}")
    if sum(set(query) <= set(block) for block in blocks) > 1:
        raise ValueError(f"another block than 'tgt' holds every letter of the query {query!r}")
    return src, tgt


def read_letter_blocks(path):
    """Examples from a JSON-lines file in the authors' format; ValueError says what is wrong where."""
    examples = []
    try:
        with open(path, "rb") as f:
            for number, raw in enumerate(iter(lambda: f.readline(MAX_LINE + 2), b""), 1):
                where = f"{path}:{number}"  # lines are read bounded: a line of 1 GB is refused unread
                if len(raw.rstrip(b"\r\n")) > MAX_LINE:
                    raise ValueError(f"{where}: line longer than {MAX_LINE} characters")
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise ValueError(f"{where}: not UTF-8 text")
                if not line.strip():
                    raise ValueError(f"{where}: empty line")
                try:
                    src, tgt = check_example(json.loads(line))
                except json.JSONDecodeError:
                    raise ValueError(f"{where}: not JSON")
                except ValueError as error:
                    raise ValueError(f"{where}: {error}")
                if examples and len(tgt) != len(examples[0][1]):
                    raise ValueError(f"{where}: 'tgt' has {len(tgt)} letters, line 1's {len(examples[0][1])} "
                                     f"(one block length a file)")
                examples.append((src, tgt))
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error}")
    if not examples:
        raise ValueError(f"{path}: no examples")
    return examples


def write_letter_blocks(path, examples):
    with open(path, "w") as f:
        for src, tgt in examples:
            f.write(json.dumps({"src": src, "tgt": tgt}) + "\n")
