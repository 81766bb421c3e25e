"""The command line's contract, shown on the transformer experiment (the others test their own)."""
import json

import numpy as np
import pytest

import tasks
from conftest import check_result, result_lines

SHORT = ["transformer", "--steps", 6, "--eval-every", 3, "--test-size", 20, "--max-len", 8,
         "--d-model", 16, "--d-ff", 32, "--batch-size", 4, "--device", "cpu"]


@pytest.mark.parametrize("argv, complaint", [
    (["no-such-paper"], "invalid choice"),
    (["transformer", "--steps", 0], "positive"),
    (["transformer", "--batch-size", -3], "positive"),
    (["transformer", "--lr", "fast"], "positive number"),
    (["transformer", "--device", "tpu"], "unknown device"),
    (["transformer", "--min-len", 9, "--max-len", 5], "--min-len"),
    (["transformer", "--d-model", 10, "--heads", 3], "divisible"),
    (["transformer", "--dropout", 2], "dropout"),
    (["transformer", "--label-smoothing", 1], "label-smoothing"),
])
def test_bad_input_is_one_line_and_exit_code_2(run_train, argv, complaint):
    code, out, err = run_train(*argv)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and complaint in err
    assert "Traceback" not in err


def test_unknown_name_lists_the_valid_ones(run_train):
    _, _, err = run_train("no-such-paper")
    assert "transformer" in err


def test_a_short_run_prints_a_valid_result_line(run_train, tmp_path):
    code, out, _ = run_train(*SHORT, "--out", tmp_path)
    assert code == 0
    assert out.strip().splitlines()[-1].startswith("result: ")
    [result] = result_lines(out)
    check_result(result, "transformer")
    assert result["steps"] == 6 and result["device"] == "cpu"
    assert 0 <= result["metrics"]["exact_match"] <= 1
    assert json.loads((tmp_path / "result.json").read_text()) == result
    assert (tmp_path / "model.pt").exists()
    assert "step      3 | loss" in out  # a progress line every --eval-every steps


def test_same_seed_same_result(run_train):
    first, second, other = (result_lines(run_train(*SHORT, "--seed", s)[1])[0] for s in (7, 7, 8))
    for result in (first, second, other):
        result.pop("seconds")
    assert first == second
    assert first["metrics"]["final_loss"] != other["metrics"]["final_loss"]


def test_compare_prints_one_result_per_variant_then_the_table(run_train):
    code, out, _ = run_train(*SHORT, "--compare", "--steps", 2)
    assert code == 0
    assert [r["variant"] for r in result_lines(out)] == ["transformer", "one head"]
    assert out.strip().splitlines()[-1].startswith("| one head")


def test_toy_translation_swaps_adjective_noun_pairs_only():
    task = tasks.ToyTranslation(4, 40)
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
    import train
    args = train.build_parser().parse_args(["transformer", "--seed", "3"])
    _, pairs_a = train.translation_task(args)
    args.seed = 4
    _, pairs_b = train.translation_task(args)
    assert pairs_a == pairs_b
