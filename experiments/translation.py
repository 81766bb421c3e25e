"""What the two translation experiments share (`python train.py bahdanau`, `python train.py transformer`):
the toy language pair, its flags, the teacher-forced and decoded scores, the per-length table, the
held-out decoding, the attention picture and the ending of both runs.

A made-up language pair with a fixed random dictionary: every source word has one target word. The
one grammar rule is the English -> French adjective-noun inversion ("red car" -> "voiture rouge"), so
the alignment is diagonal with local swaps, the picture of Bahdanau et al.'s Figure 3. Source lengths
are uniform over [min_len, max_len] so that long sentences are common enough to measure (Bahdanau et
al.'s Figure 2: a fixed-size context vector loses long sentences). Nothing is downloaded.
"""
import numpy as np
import torch

import train
from experiments import pictures

PAD, BOS, EOS = 0, 1, 2  # token ids of every sentence, source and target
SPECIALS = ["<pad>", "<bos>", "<eos>"]


# ---- the task ----

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
                                       (first + sum(sizes) + rng.permutation(sum(sizes))).tolist()))
        self.dictionary = torch.tensor([self.translate_word.get(i, PAD) for i in range(len(self.vocab))])

    @property
    def vocab_size(self):
        return len(self.vocab)

    def buckets(self):
        """Source-length buckets for the per-length table: 4-10, 11-20, ..., up to max_len, each
        cut to [min_len, max_len] (4-30: three buckets; --min-len 25: one bucket 25-30)."""
        edges = list(range(10, self.max_len, 10)) + [self.max_len]
        lows = [self.min_len] + [e + 1 for e in edges[:-1]]
        return [(max(lo, self.min_len), hi) for lo, hi in zip(lows, edges) if hi >= self.min_len]

    def sentences(self, lengths, generator):
        """Sentences of the given source lengths (host integers), drawn with torch on generator.device
        (a batch is made where it is trained on, with no host reads): src [B, S] (PAD-padded, S the
        longest), tgt [B, S + 2] = BOS target EOS (PAD-padded).

        A sentence is a run of units: while two words still fit, a function word, a noun or an
        adjective-noun pair (1/3 each); a last single word is a function word or a noun (1/2 each);
        each word uniform within its class. Every sentence draws one candidate unit per position;
        unit k starts where the units before it end, and the units that start beyond the sentence's
        length are dropped: the same distribution as drawing the units one after another."""
        device, B, S = generator.device, len(lengths), int(max(lengths))
        to_device = lambda x: torch.as_tensor(x).to(device, non_blocking=True)  # no wait for the device
        length = to_device(np.asarray(lengths)).unsqueeze(1)  # [B, 1]
        draw = lambda n: torch.randint(n, (B, S), generator=generator, device=device)
        kind = draw(3)                                   # 0 function word, 1 noun, 2 adjective noun
        size = 1 + (kind == 2)
        start = size.cumsum(1) - size                    # where each candidate unit begins
        kind = torch.where(start == length - 1, draw(2), kind)  # one word left: no pair
        fits, pair = start < length, (start < length) & (kind == 2)
        nouns = self.nouns[0] + draw(len(self.nouns))
        first = torch.where(kind == 0, self.function_words[0] + draw(len(self.function_words)),
                            torch.where(kind == 1, nouns, self.adjectives[0] + draw(len(self.adjectives))))
        second = self.nouns[0] + draw(len(self.nouns))   # the noun after an adjective

        def place(first_words, second_words):  # column S collects the units that do not fit
            words = torch.full((B, S + 1), PAD, device=device)
            words.scatter_(1, torch.where(fits, start, S), first_words)
            words.scatter_(1, torch.where(pair, start + 1, S), second_words)
            return words[:, :S]

        table = to_device(self.dictionary)
        src = place(first, second)
        target = place(table[torch.where(pair, second, first)], table[first])  # adjective noun -> noun adjective
        tgt = torch.cat([torch.full((B, 1), BOS, device=device), target,
                         torch.full((B, 1), PAD, device=device)], dim=1)
        return src, tgt.scatter_(1, length + 1, EOS)

    def draw_lengths(self, n, rng):
        """n source lengths, uniform over [min_len, max_len], from a numpy generator (on the host)."""
        return rng.integers(self.min_len, self.max_len + 1, size=n)

    def pairs(self, n, rng):
        """n (source ids, target ids) pairs as lists, the target without BOS and EOS (held-out sets):
        the lengths from rng, the words from a torch generator on the CPU seeded from rng."""
        lengths = self.draw_lengths(n, rng)
        src, tgt = self.sentences(lengths, torch.Generator().manual_seed(int(rng.integers(2 ** 63))))
        return [(s[:k].tolist(), t[1:k + 1].tolist()) for s, t, k in zip(src, tgt, lengths.tolist())]

    @staticmethod
    def collate(pairs):
        """src [B, S] (PAD-padded), tgt [B, T+2] = BOS target EOS (PAD-padded)."""
        src = train.pad_batch([s for s, _ in pairs], PAD)
        tgt = train.pad_batch([[BOS] + t + [EOS] for _, t in pairs], PAD)
        return src, tgt

    def words(self, ids):
        return [self.vocab[i] for i in ids]


def training_batches(task, batch_size, rng, device, pool=1):
    """Endless training batches of fresh sentences, made on `device` (no copy from the host per step):
    the source lengths come from the numpy generator rng (on the host, so a batch's width is known
    without reading the device), the words from a torch generator on `device` seeded from rng.
    pool > 1: draw pool x batch_size lengths, sort them and cut them into `pool` minibatches, served in
    random order (Bahdanau et al., Appendix B.2: 1600 pairs sorted into 20 minibatches): less padding,
    so shorter decoder loops. pool = 1: every batch a sample of independent sentences."""
    generator = torch.Generator(device).manual_seed(int(rng.integers(2 ** 63)))
    while True:
        lengths = np.sort(task.draw_lengths(batch_size * pool, rng)).reshape(pool, batch_size)
        for k in rng.permutation(pool):
            yield task.sentences(lengths[k], generator)


def add_translation_args(p, max_len):
    p.add_argument("--min-len", type=train.int_in(2, 500), default=4, help="shortest source sentence (tokens)")
    p.add_argument("--max-len", type=train.int_in(2, 500), default=max_len, help="longest source sentence (tokens)")
    p.add_argument("--test-size", type=train.int_in(1, 100_000), default=1000, help="held-out sentences")
    p.add_argument("--beam", type=train.int_in(1, 64), default=1,
                   help="beam width for the final held-out decoding (1 = greedy)")
    p.add_argument("--target", type=train.float_in(0, 1), default=0.99,
                   help="held-out exact match that counts as solved (during training: teacher forced, on "
                        "every 5th held-out sentence, then on all once those come within twice its error "
                        "rate; at the end: the final decoding of all)")


def check_translation_args(args):
    if args.min_len > args.max_len:
        raise train.UsageError(f"need 2 <= --min-len <= --max-len, got {args.min_len} and {args.max_len}")


def translation_task(args):
    """The task and its held-out pairs, which come from TEST_SEED and never from --seed, sorted by
    source length: evaluation batches then hold sentences of about one length (little padding)."""
    task = ToyTranslation(args.min_len, args.max_len)
    test_pairs = task.pairs(args.test_size, np.random.default_rng(train.TEST_SEED))
    return task, sorted(test_pairs, key=lambda pair: len(pair[0]))


# ---- the scores ----

def translation_scores(task, pairs, exact, correct):
    """exact[n] (bool), correct[n] (tokens right, EOS included) -> overall and per-length-bucket."""
    lengths = np.array([len(s) for s, _ in pairs])
    totals = np.array([len(t) + 1 for _, t in pairs])
    exact, correct = np.asarray(exact, dtype=float), np.asarray(correct, dtype=float)
    scores = {"exact_match": exact.mean(), "token_accuracy": correct.sum() / totals.sum()}
    for lo, hi in task.buckets():
        inside = (lengths >= lo) & (lengths <= hi)
        # a bucket without a held-out sentence scores None (JSON null), not NaN (not JSON)
        scores[f"len {lo}-{hi}"] = None if not inside.any() else {
            "exact_match": round(exact[inside].mean(), 4),
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
        right = (prediction == gold) & (gold != PAD)
        correct += right.sum(1).tolist()
        exact += (right.sum(1) == (gold != PAD).sum(1)).tolist()
    return translation_scores(task, pairs, exact, correct)


def held_out_check(task, test_pairs, device, target, label, every=5):
    """The evaluation during training -> evaluate(model): teacher-forced scores of every 5th held-out
    sentence (all lengths, the set being sorted by length); once those make at most twice the errors
    that `target` allows (exact match >= 2 target - 1: 0.98 for 0.99), of the whole held-out set, so
    that training stops only when all of it reaches `target`. A fifth of the cost, most of the time;
    the margin keeps a screen that happens to hold more than its share of the errors from delaying it."""
    def evaluate(model):
        scores = teacher_forced_scores(model, task, test_pairs[::every], device)
        if scores["exact_match"] >= 2 * target - 1:
            print(f"[{label}] every {every}th held-out sentence: exact match {scores['exact_match']:.4f}; "
                  f"checking all {len(test_pairs)}")
            scores = teacher_forced_scores(model, task, test_pairs, device)
        return scores
    return evaluate


def until_eos(ids):
    """A decoded id list cut after its first EOS (kept whole if it has none)."""
    return ids[: ids.index(EOS) + 1] if EOS in ids else ids


def decoded_scores(decode, task, pairs, device, batch_size=250):
    """decode(src [B, S]) -> LongTensor [B, L] of output ids (EOS ends a sentence)."""
    exact, correct = [], []
    for i in range(0, len(pairs), batch_size):
        chunk = pairs[i:i + batch_size]
        src, _ = task.collate(chunk)
        for hypothesis, (_, target) in zip(decode(src.to(device)).tolist(), chunk):
            reference = target + [EOS]
            hypothesis = until_eos(hypothesis)
            correct.append(sum(h == r for h, r in zip(hypothesis, reference)))
            exact.append(hypothesis == reference)
    return translation_scores(task, pairs, exact, correct)


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


# ---- the picture, the table and the ending ----

def show_translation_attention(args, task, test_pairs, decode, weights_of, title, filename):
    """The attention of the model on the longest held-out sentence, as a terminal heat map and a PNG.
    weights_of(src [1, S], tgt_in [1, T]) -> [T, S] weights (rows: output words, columns: source)."""
    source, _ = max(test_pairs, key=lambda pair: len(pair[0]))
    src = torch.tensor([source], device=args.device)
    hypothesis = until_eos(decode(src)[0].tolist())
    with torch.no_grad():
        weights = weights_of(src, torch.tensor([[BOS] + hypothesis[:-1]], device=args.device))
    pictures.show_heatmap(args, filename, weights.cpu().numpy(), task.words(hypothesis), task.words(source), title)


def bucket_table(task, scores_by_variant):
    """Exact-match and token accuracy per source-length bucket, one column pair per variant."""
    headers = ["source length"]
    for variant in scores_by_variant:
        headers += [f"{variant} exact", f"{variant} token acc"]
    rows = []
    for name in [f"len {lo}-{hi}" for lo, hi in task.buckets()] + ["all"]:
        row = [name]
        for scores in scores_by_variant.values():
            cell = scores if name == "all" else scores[name]
            if cell is None:  # no held-out sentence of these lengths
                row += ["-", "-"]
            else:
                row += [f"{cell['exact_match']:.3f}", f"{cell['token_accuracy']:.3f}"]
        rows.append(row)
    return None, headers, rows


def report_translation(args, task, finished):
    """finished: [(variant, run, scores, model)] -> (results, tables) for train.report: one result
    per variant, solved when the decoded exact match reaches --target; the per-length table, and
    with --compare a table of sizes, steps and times."""
    pictures.save_loss_curves(args, {variant: run["losses"] for variant, run, _, _ in finished})
    results = []
    for variant, run, scores, model in finished:
        run = dict(run, solved=bool(scores["exact_match"] >= args.target))  # judged on decoded output
        metrics = dict(scores, final_loss=round(run["losses"][-1], 4), parameters=train.count_parameters(model))
        results.append(("toy-translation", variant, run, metrics, model))
    tables = [bucket_table(task, {variant: scores for variant, _, scores, _ in finished})]
    if args.compare:
        tables.append(("", ["variant", "parameters", "steps", "seconds", "exact match"],
                       [[variant, metrics["parameters"], run["steps"], run["seconds"],
                         f"{metrics['exact_match']:.3f}"] for _, variant, run, metrics, _ in results]))
    return results, tables
