"""Tests for experiments/letter_blocks.py: the letter-block task of MTA's section 4.1 and its files.

The generator is checked against the rules and distributions of the authors' toy-task generator
(facebookresearch/RAM projects/mta/toy_task/generate_data.py): target = random.sample(alphabet, N),
query = random.sample(target, L) (random order), distractors = random.sample(alphabet, N) kept
when they miss a query letter, all blocks distinct (a set) and shuffled. Tolerances are ~4.5 sigma
of the sampling error at a fixed seed."""
import itertools
import math

import numpy as np
import pytest
import torch

from experiments import letter_blocks
from experiments.letter_blocks import LETTERS, LetterBlocks

def slow_solver(src):
    """Find the answer by brute force over the blocks, independently of the generator."""
    text, query = src.split("#")
    holding_all = [block for block in text.split(".") if all(letter in block for letter in query)]
    assert len(holding_all) == 1, src
    return holding_all[0]


def seeded(seed):
    return torch.Generator().manual_seed(seed)


def sigma_bound(p, n, sigmas=4.5):
    return sigmas * math.sqrt(p * (1 - p) / n)


@pytest.fixture(scope="module")
def many_samples():
    """4000 samples of 4 blocks of 5 letters, L = 2 (more distractors than the default 2 blocks)."""
    return LetterBlocks(4, 2, 5).examples(4000, seeded(11))


# ---- the generator: rules ---------------------------------------------------------------------

@pytest.mark.parametrize("n_blocks,query_letters", [(4, 2), (12, 3), (52, 2)])
def test_generator_answers_are_right_with_distinct_letters_and_blocks(n_blocks, query_letters):
    task = LetterBlocks(n_blocks, query_letters)
    for src, tgt in task.examples(200, seeded(0)):
        blocks = src.split("#")[0].split(".")
        assert len(blocks) == n_blocks and len(set(blocks)) == n_blocks
        assert all(len(b) == len(set(b)) == 5 and set(b) <= set(LETTERS) for b in blocks)
        query = src.split("#")[1]
        assert len(query) == len(set(query)) == query_letters and slow_solver(src) == tgt
    if n_blocks == 52:  # the paper's length: 52 blocks, '#', 2 query letters and the 5-letter answer
        assert len(src) + len(tgt) == 319


def test_blocks_are_distinct_when_the_alphabet_is_nearly_used_up():
    # 26 one-letter blocks, L = 1: the 25 distractors must be the 25 other letters, once each
    for src, tgt in LetterBlocks(26, 1, 1).examples(20, seeded(1)):
        blocks = src.split("#")[0].split(".")
        assert sorted(blocks) == list(LETTERS) and src.split("#")[1] == tgt


def test_query_letters_come_from_the_target_in_random_order(many_samples):
    n = len(many_samples)
    in_block_order = np.mean([tgt.index(src[-2]) < tgt.index(src[-1]) for src, tgt in many_samples])
    alphabetical = np.mean([src[-2] < src[-1] for src, _ in many_samples])
    assert abs(in_block_order - 0.5) < sigma_bound(0.5, n) and abs(alphabetical - 0.5) < sigma_bound(0.5, n)
    for q in (-2, -1):  # each query letter sits at any of the 5 target positions with chance 1/5
        where = np.bincount([tgt.index(src[q]) for src, tgt in many_samples], minlength=5) / n
        assert np.abs(where - 0.2).max() < sigma_bound(0.2, n)


def test_target_letters_are_uniform_and_the_target_block_anywhere(many_samples):
    n = len(many_samples)
    letters = np.array([[letter in tgt for letter in LETTERS] for _, tgt in many_samples]).mean(0)
    assert np.abs(letters - 5 / 26).max() < sigma_bound(5 / 26, n)  # every letter, chance 5/26
    place = np.bincount([src.split("#")[0].split(".").index(tgt) for src, tgt in many_samples]) / n
    assert len(place) == 4 and np.abs(place - 0.25).max() < sigma_bound(0.25, n)


def test_a_third_of_the_distractors_hold_one_query_letter(many_samples):
    # a uniform 5-letter block misses both of 2 query letters or holds one: P(exactly one | not both)
    # = 2 C(24,4) / (C(26,5) - C(24,3)) = 1/3, the paper's "about a third"
    counts = []
    for src, tgt in many_samples:
        text, query = src.split("#")
        counts += [sum(q in block for q in query) for block in text.split(".") if block != tgt]
    counts = np.array(counts)
    assert counts.max() <= 1  # no distractor holds both
    assert abs((counts == 1).mean() - 1 / 3) < sigma_bound(1 / 3, len(counts))


@pytest.mark.parametrize("block_length,query_letters", [(1, 1), (2, 1), (2, 2), (3, 2), (3, 3)])
def test_distractor_count_equals_brute_force(block_length, query_letters):
    query = set(range(query_letters))
    count = sum(not query <= set(block) for block in itertools.permutations(range(26), block_length))
    assert letter_blocks.distractor_blocks(block_length, query_letters) == count


def test_the_stream_of_candidates_is_the_shortest_that_fails_with_at_most_the_given_chance():
    # 3 one-letter blocks, L = 1 (query letter 0): every stream of m letters, counted by brute force;
    # it fails when it holds fewer than 2 distinct letters other than 0
    def failing(m):
        streams = np.sort(np.array(list(itertools.product(range(26), repeat=m))), axis=1)
        distinct = 1 + (np.diff(streams, axis=1) != 0).sum(1) - (streams[:, 0] == 0)
        return np.mean(distinct < 2)
    m = letter_blocks.stream_length(3, 1, 1, chance=0.01)
    assert failing(m) <= 0.01 < failing(m - 1) and m == 4  # 3 letters fail with chance 0.010014


def test_a_drawn_batch_is_its_examples_collated_and_its_seed_fixes_it():
    task = LetterBlocks(5, 2)
    drawn, collated = task.draw(6, seeded(4)), LetterBlocks.collate(task.examples(6, seeded(4)))
    assert all(torch.equal(a.long(), b) for a, b in zip(drawn, collated))
    assert not torch.equal(drawn[0], task.draw(6, seeded(5))[0])


@pytest.mark.parametrize("shape", [(2, 2, 26), (27, 1, 1), (2, 5, 26), (200, 2, 5)])
def test_impossible_shapes_are_refused_at_once_instead_of_sampling_forever(shape):
    with pytest.raises(ValueError):
        LetterBlocks(*shape)


@pytest.mark.parametrize("shape", [(1, 2, 26), (26, 1, 1), (2, 1, 25)])
def test_the_hardest_possible_shapes_sample(shape):
    for src, tgt in LetterBlocks(*shape).examples(5, seeded(0)):
        assert slow_solver(src) == tgt and len(tgt) == shape[2]
