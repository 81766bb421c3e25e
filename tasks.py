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
# (memn2n: bAbI-style stories, writer and parser go here)
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# (hopfield: multiple-instance bags go here)
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# (cope: counting programs, flip-flop and selective copy go here)
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# (mta: letter blocks go here)
# ---------------------------------------------------------------------------------------------
