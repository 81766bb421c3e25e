"""Tests for experiments/translation.py: the toy language pair that `bahdanau` and `transformer` share."""
import numpy as np

import train
from experiments import translation


def test_toy_translation_swaps_adjective_noun_pairs_only():
    task = translation.ToyTranslation(4, 40)
    rng = np.random.default_rng(0)
    for _ in range(200):
        source, target = task.sample(rng)
        assert 4 <= len(source) <= 40 and len(target) == len(source)
        # an independent reading of the rule: walk the source, translating words, swapping pairs
        expected, i = [], 0
        while i < len(source):
            if source[i] in task.adjectives:
                assert source[i + 1] in task.nouns
                expected += [task.translate_word[source[i + 1]], task.translate_word[source[i]]]
                i += 2
            else:
                expected.append(task.translate_word[source[i]])
                i += 1
        assert target == expected


def test_the_test_set_does_not_depend_on_the_training_seed():
    args = train.build_parser().parse_args(["transformer", "--seed", "3"])
    _, pairs_a = translation.translation_task(args)
    args.seed = 4
    _, pairs_b = translation.translation_task(args)
    assert pairs_a == pairs_b
