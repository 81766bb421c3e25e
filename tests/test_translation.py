"""Tests for experiments/translation.py, shared by `bahdanau` and `transformer`: the toy language
pair's distributions and rules, the scores (by hand), the per-length table, the held-out decoding and
the shared flags."""
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import train
from experiments import pictures, translation
from experiments.translation import BOS, EOS, PAD

TASK = translation.ToyTranslation(4, 40)


def units(task, source):
    """An independent reading of a source sentence: [(unit kind, words left before it)]."""
    found, i = [], 0
    while i < len(source):
        left = len(source) - i
        if source[i] in task.adjectives:
            assert source[i + 1] in task.nouns
            found.append(("adjective noun", left))
            i += 2
        else:
            found.append(("noun" if source[i] in task.nouns else "function word", left))
            assert source[i] in task.nouns + task.function_words
            i += 1
    return found


def test_toy_translation_translates_each_word_and_swaps_adjective_noun_pairs_only():
    for source, target in TASK.pairs(300, np.random.default_rng(0)):
        assert 4 <= len(source) <= 40 and len(target) == len(source)
        expected, i = [], 0
        while i < len(source):
            if source[i] in TASK.adjectives:
                expected += [TASK.translate_word[source[i + 1]], TASK.translate_word[source[i]]]
                i += 2
            else:
                expected.append(TASK.translate_word[source[i]])
                i += 1
        assert target == expected and BOS not in target and EOS not in target


def test_source_lengths_are_uniform_over_min_len_to_max_len():
    task, n = translation.ToyTranslation(3, 9), 7000
    counts = Counter(len(source) for source, _ in task.pairs(n, np.random.default_rng(5)))
    assert set(counts) == set(range(3, 10))
    p = 1 / 7
    for length in range(3, 10):
        assert abs(counts[length] / n - p) < 5 * (p * (1 - p) / n) ** 0.5, length


def test_units_are_uniform_and_a_last_single_word_is_never_an_adjective():
    seen = Counter()
    for source, _ in TASK.pairs(1500, np.random.default_rng(1)):
        for kind, left in units(TASK, source):
            seen[kind, "room for two" if left >= 2 else "one left"] += 1
    room = sum(seen[k, "room for two"] for k in ("function word", "noun", "adjective noun"))
    for kind in ("function word", "noun", "adjective noun"):  # 1/3 each while two words fit
        assert abs(seen[kind, "room for two"] / room - 1 / 3) < 5 * (2 / 9 / room) ** 0.5
    last = seen["function word", "one left"] + seen["noun", "one left"]
    assert seen["adjective noun", "one left"] == 0                   # 1/2 each for the last word
    assert abs(seen["noun", "one left"] / last - 1 / 2) < 5 * (1 / 4 / last) ** 0.5


def test_words_are_uniform_within_their_class():
    words = Counter()
    for source, _ in TASK.pairs(1500, np.random.default_rng(2)):
        words.update(source)
    for cls in (TASK.nouns, TASK.adjectives, TASK.function_words):
        total = sum(words[w] for w in cls)
        p = 1 / len(cls)
        for w in cls:
            assert abs(words[w] / total - p) < 5 * (p * (1 - p) / total) ** 0.5, w


def test_the_dictionary_is_a_fixed_bijection_of_the_language_seed_only():
    first = len(translation.SPECIALS)
    assert translation.SPECIALS[PAD] == "<pad>" and translation.SPECIALS[BOS] == "<bos>" and translation.SPECIALS[EOS] == "<eos>"
    assert (len(TASK.nouns), len(TASK.adjectives), len(TASK.function_words)) == (50, 15, 8)
    assert TASK.vocab_size == 3 + 2 * 73 == len(set(TASK.vocab))
    source_words = TASK.nouns + TASK.adjectives + TASK.function_words
    assert sorted(source_words) == list(range(first, first + 73))
    assert sorted(TASK.translate_word) == source_words
    assert sorted(TASK.translate_word.values()) == list(range(first + 73, first + 146))  # one each
    other = translation.ToyTranslation(10, 20)  # other lengths, made after drawing data
    TASK.pairs(50, np.random.default_rng(123))
    assert other.translate_word == TASK.translate_word and other.vocab == TASK.vocab
    assert translation.ToyTranslation(4, 40, language_seed=1).translate_word != TASK.translate_word


def test_a_batch_is_bos_target_eos_then_padding_as_wide_as_its_longest_sentence():
    lengths = [5, 4, 7]
    src, tgt = TASK.sentences(lengths, torch.Generator().manual_seed(0))
    assert src.shape == (3, 7) and tgt.shape == (3, 9)
    for row, k in enumerate(lengths):
        assert (src[row, :k] != PAD).all() and (src[row, k:] == PAD).all()
        assert tgt[row, 0] == BOS and tgt[row, k + 1] == EOS and (tgt[row, k + 2:] == PAD).all()
        assert sorted(tgt[row, 1:k + 1].tolist()) == sorted(TASK.translate_word[w] for w in src[row, :k].tolist())


def spans(batches):
    """(shortest, longest) source length of each batch, sorted."""
    return sorted(((src != PAD).sum(1).min().item(), (src != PAD).sum(1).max().item()) for src, _ in batches)


def disjoint(spans):
    return all(hi <= next_lo for (_, hi), (next_lo, _) in zip(spans, spans[1:]))


def test_a_pool_of_20_is_cut_into_20_sorted_batches_served_shuffled():
    batches = translation.training_batches(TASK, 8, np.random.default_rng(0), "cpu", pool=20)
    first, second = [next(batches) for _ in range(20)], [next(batches) for _ in range(20)]
    assert all(src.size(0) == 8 and tgt.size(0) == 8 for src, tgt in first + second)
    assert disjoint(spans(first)) and disjoint(spans(second))  # each pool: sorted, then cut
    assert not disjoint(spans(first + second))                # a fresh pool after 20 batches
    shortest = [(src != PAD).sum(1).min().item() for src, _ in first]
    assert shortest != sorted(shortest)                        # served in random order
    assert spans(first)[0][0] < spans(first)[-1][1]
    unsorted = translation.training_batches(TASK, 8, np.random.default_rng(0), "cpu")  # pool 1: no sorting
    assert sum(hi - lo for lo, hi in spans([next(unsorted) for _ in range(20)])) > 20 * 20


def test_batches_come_from_the_seed_alone_not_from_torchs_global_generator():
    def first_batches(seed, global_seed):
        torch.manual_seed(global_seed)
        batches = translation.training_batches(TASK, 8, np.random.default_rng(seed), "cpu")
        return [[t.tolist() for t in next(batches)] for _ in range(3)]
    assert first_batches(3, 0) == first_batches(3, 1) != first_batches(4, 0)


@pytest.mark.parametrize("lengths", [(1, 5), (6, 5)])
def test_toy_translation_refuses_lengths_outside_2_to_max_len(lengths):
    with pytest.raises(ValueError):
        translation.ToyTranslation(*lengths)


def test_collate_pads_sources_and_wraps_targets_in_bos_and_eos():
    src, tgt = TASK.collate([([5, 6, 7], [80, 81, 82]), ([9, 10], [90, 91])])
    assert src.tolist() == [[5, 6, 7], [9, 10, PAD]]
    assert tgt.tolist() == [[BOS, 80, 81, 82, EOS], [BOS, 90, 91, EOS, PAD]]


@pytest.mark.parametrize("lengths, buckets", [
    ((4, 40), [(4, 10), (11, 20), (21, 30), (31, 40)]), ((4, 25), [(4, 10), (11, 20), (21, 25)]),
    ((35, 40), [(35, 40)]), ((15, 30), [(15, 20), (21, 30)]), ((10, 11), [(10, 10), (11, 11)]),
    ((2, 5), [(2, 5)]),
])
def test_buckets_cover_min_len_to_max_len_in_tens(lengths, buckets):
    assert translation.ToyTranslation(*lengths).buckets() == buckets


def test_translation_scores_by_hand_and_an_empty_bucket_is_none():
    task = translation.ToyTranslation(4, 25)
    pairs = [([3] * 4, [80] * 4), ([3] * 12, [80] * 12), ([3] * 15, [80] * 15)]
    scores = translation.translation_scores(task, pairs, [True, False, True], [5, 7, 16])
    assert scores["exact_match"] == pytest.approx(2 / 3)
    assert scores["token_accuracy"] == pytest.approx((5 + 7 + 16) / (5 + 13 + 16))  # EOS counts
    assert scores["len 4-10"] == {"exact_match": 1.0, "token_accuracy": 1.0}
    assert scores["len 11-20"] == {"exact_match": 0.5, "token_accuracy": round(23 / 29, 4)}
    assert scores["len 21-25"] is None


def test_decoded_scores_read_up_to_the_first_eos():
    task = translation.ToyTranslation(4, 10)
    pairs = [([3, 4, 5, 6], [80, 81, 82, 83]), ([3, 4, 5, 6, 7], [80, 81, 82, 83, 84])]
    outputs = torch.tensor([[80, 81, 82, 83, EOS, PAD, PAD],   # exact, PAD after EOS
                            [80, 99, 82, 83, 84, EOS, 85]])    # one wrong; after EOS ignored
    scores = translation.decoded_scores(lambda src: outputs, task, pairs, "cpu")
    assert scores["exact_match"] == 0.5
    assert scores["token_accuracy"] == pytest.approx((5 + 5) / (5 + 6))
    no_eos = torch.tensor([[80, 81, 82, 83, 84, 85], [80, 81, 82, 83, 84, 85]])  # never ended
    assert translation.decoded_scores(lambda src: no_eos, task, pairs, "cpu")["exact_match"] == 0.0


def test_teacher_forced_scores_compare_argmax_to_the_next_gold_word():
    task = translation.ToyTranslation(4, 10)
    pairs = [([3, 4, 5, 6], [80, 81, 82, 83]), ([3, 4, 5, 6, 7], [80, 81, 82, 83, 84])]

    def model(src, tgt_in):  # right everywhere but the second sentence's third word
        _, tgt = task.collate(pairs)
        gold = tgt[:, 1:].clone()
        gold[1, 2] = 99
        return torch.nn.functional.one_hot(gold, task.vocab_size).float()

    scores = translation.teacher_forced_scores(model, task, pairs, "cpu")
    assert scores["exact_match"] == 0.5 and scores["token_accuracy"] == pytest.approx(10 / 11)


def test_training_checks_every_5th_held_out_sentence_then_all_once_those_come_within_twice_the_error():
    task = translation.ToyTranslation(4, 10)
    pairs = sorted(task.pairs(50, np.random.default_rng(0)), key=lambda pair: len(pair[0]))
    answers = {tuple(source): target for source, target in pairs}

    def wrong_on(*indices):
        wrong = {tuple(pairs[i][0]) for i in indices}

        def model(src, tgt_in):  # right everywhere but the first word of the sentences `wrong`
            sizes.append(len(src))
            gold = torch.full(tgt_in.shape, PAD)
            for row, source in enumerate(src.tolist()):
                source = tuple(w for w in source if w != PAD)
                gold[row, :len(answers[source]) + 1] = torch.tensor(answers[source] + [EOS])
                gold[row, 0] = PAD if source in wrong else gold[row, 0]
            return torch.nn.functional.one_hot(gold, task.vocab_size).float()
        return model

    evaluate = translation.held_out_check(task, pairs, "cpu", 0.9, "x")  # all checked from 0.8 on
    sizes = []
    assert evaluate(wrong_on(0, 5, 1))["exact_match"] == 0.94 and sizes == [10, 50]  # screen 0.8, then all
    sizes = []
    assert evaluate(wrong_on(0, 5, 10))["exact_match"] == 0.7 and sizes == [10]      # the screen: 0, 5, 10, ..


def test_bucket_table_prints_a_dash_for_an_empty_bucket():
    task = translation.ToyTranslation(4, 25)
    scores = {"exact_match": 0.5, "token_accuracy": 0.75, "len 4-10": None,
              "len 11-20": {"exact_match": 0.25, "token_accuracy": 0.5}, "len 21-25": None}
    _, headers, rows = translation.bucket_table(task, {"A": scores})
    assert headers == ["source length", "A exact", "A token acc"]
    assert rows == [["len 4-10", "-", "-"], ["len 11-20", "0.250", "0.500"], ["len 21-25", "-", "-"],
                    ["all", "0.500", "0.750"]]


def test_solved_is_judged_on_decoded_exact_match_at_least_target():
    args = SimpleNamespace(target=0.5, compare=False, out=None)
    model = torch.nn.Linear(2, 2)
    run = {"losses": [1.0, 0.5], "steps": 2, "seconds": 0.1, "solved": False}
    scores = lambda exact: {"exact_match": exact, "token_accuracy": 0.5, "len 4-8": None}
    finished = [("A", run, scores(0.5), model), ("B", run, scores(0.4999), model)]
    results, _ = translation.report_translation(args, translation.ToyTranslation(4, 8), finished)
    assert [r[2]["solved"] for r in results] == [True, False]


def test_decode_held_out_is_greedy_at_beam_1_with_room_for_ten_more_words():
    calls = []
    module = SimpleNamespace(
        greedy_decode=lambda model, src, max_len: calls.append(("greedy", max_len)) or src,
        beam_search=lambda model, src, beam, max_len: calls.append(("beam", beam, max_len)) or src)
    pairs = [([5, 6, 7], [5, 6, 7])]
    for beam in (1, 3):
        args = SimpleNamespace(beam=beam, device="cpu")
        translation.decode_held_out(args, TASK, pairs, module, torch.nn.Linear(1, 1), "x")
    assert calls == [("greedy", 13), ("beam", 3, 13)]


def test_the_attention_picture_is_of_the_longest_held_out_sentence(monkeypatch):
    drawn = []
    monkeypatch.setattr(pictures, "show_heatmap", lambda *a: drawn.append(a))
    pairs = [([5, 6], [80, 81]), ([5, 6, 7, 8], [80, 81, 82, 83]), ([7, 8, 9], [82, 83, 84])]
    decode = lambda src: torch.tensor([[80, 81, EOS, PAD]])
    weights_of = lambda src, tgt_in: torch.ones(tgt_in.size(1), src.size(1)) * (tgt_in[0, :, None] == BOS)
    translation.show_translation_attention(SimpleNamespace(device="cpu"), TASK, pairs, decode,
                                           weights_of, "title", "a.png")
    (_, _, matrix, rows, columns, _), = drawn
    assert columns == TASK.words([5, 6, 7, 8]) and rows == TASK.words([80, 81, EOS])
    assert matrix.shape == (3, 4) and matrix[0].tolist() == [1, 1, 1, 1] and matrix[1:].sum() == 0


def test_the_test_set_comes_from_test_seed_not_the_training_seed():
    args = train.build_parser().parse_args(["transformer", "--seed", "3", "--test-size", "20"])
    task, pairs_a = translation.translation_task(args)
    args.seed = 4
    _, pairs_b = translation.translation_task(args)
    drawn = task.pairs(20, np.random.default_rng(train.TEST_SEED))
    assert pairs_a == pairs_b == sorted(drawn, key=lambda pair: len(pair[0]))  # sorted by source length
    assert pairs_a != drawn


@pytest.mark.parametrize("experiment", ["bahdanau", "transformer"])
@pytest.mark.parametrize("flags, word", [
    (["--min-len", 1], "min-len"), (["--min-len", 9, "--max-len", 8], "min-len"),
    (["--max-len", 501], "max-len"), (["--max-len", "x"], "integer"), (["--test-size", 0], "test-size"),
    (["--test-size", 100_001], "test-size"), (["--beam", 0], "beam"), (["--beam", 65], "beam"),
    (["--target", 1.5], "target"), (["--target", -0.1], "target"), (["--target", "nan"], "target"),
])
def test_bad_translation_flags_give_one_line_and_exit_2(run_train, experiment, flags, word):
    cheap = ["--batch-size", 1, "--test-size", 2, "--max-len", 6]  # if the bad flag were accepted
    code, out, err = run_train(experiment, *cheap, *flags, "--steps", 1, "--device", "cpu")
    assert code == 2 and err.count("\n") == 1 and word in err and "Traceback" not in err + out
