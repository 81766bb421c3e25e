"""Tests for experiments/mta_experiment.py: the letter-block task, its data files and `train.py mta`."""
import json

import numpy as np
import pytest

import train
from conftest import HAS_MATPLOTLIB, check_result, result_lines
from experiments import mta_experiment


def slow_solver(src):
    """Find the answer by brute force over the blocks, independently of the generator."""
    text, query = src.split("#")
    holding_all = [block for block in text.split(".") if all(letter in block for letter in query)]
    assert len(holding_all) == 1, src
    return holding_all[0]


@pytest.mark.parametrize("n_blocks,query_letters", [(4, 2), (12, 3), (52, 2)])
def test_generator_answers_are_right(n_blocks, query_letters):
    task = mta_experiment.LetterBlocks(n_blocks, query_letters)
    for src, tgt in task.examples(200, np.random.default_rng(0)):
        blocks = src.split("#")[0].split(".")
        assert len(blocks) == n_blocks and len(set(blocks)) == n_blocks
        assert all(len(b) == len(set(b)) == 5 for b in blocks)
        assert len(src.split("#")[1]) == query_letters and slow_solver(src) == tgt
    if n_blocks == 52:  # the paper's length: 52 blocks, '#', 2 query letters and the 5-letter answer
        assert len(src) + len(tgt) == 319


def test_batches_predict_the_target_from_the_position_before_it():
    examples = [("abcde.fghij#hf", "fghij"), ("abcde.fghij.klmno#ca", "abcde")]
    tokens, positions, targets = mta_experiment.LetterBlocks.collate(examples)
    for row, (src, tgt) in enumerate(examples):
        full = mta_experiment.LetterBlocks.encode(src + tgt)
        for n in range(len(tgt)):  # the token at a position is followed by the letter it must predict
            assert full[positions[row, n] + 1] == targets[row, n]
            assert tokens[row, positions[row, n]] == full[positions[row, n]]


def test_cli_prints_a_valid_result_line(run_train, tmp_path):
    code, out, err = run_train("mta", "--steps", "6", "--eval-every", "3", "--blocks", "3",
                               "--test-size", "50", "--out", tmp_path)
    assert code == 0, err
    [result] = result_lines(out)
    check_result(result, "mta")
    assert 0 <= result["metrics"]["first_letter_error"] <= 1
    assert "attention before the key-query convolution" in out
    assert (tmp_path / "result.json").exists()
    if HAS_MATPLOTLIB:
        assert (tmp_path / "attention-after-conv.png").exists() and (tmp_path / "loss.png").exists()


def test_cli_compare_prints_both_models_and_the_table(run_train):
    code, out, err = run_train("mta", "--compare", "--seeds", "2", "--steps", "3", "--eval-every", "3",
                               "--blocks", "2", "--test-size", "20", "--d-model", "16")
    assert code == 0, err
    results = result_lines(out)
    assert [r["variant"] for r in results] == ["mta", "standard"]
    assert all(r["metrics"]["seeds"] == [0, 1] for r in results)
    assert "| **standard** (ours)" in out and "| MTA (paper)" in out and "51.6" in out


def test_cli_baseline_trains_standard_attention_only(run_train):
    code, out, err = run_train("mta", "--baseline", "--steps", "2", "--eval-every", "2", "--blocks", "2",
                               "--test-size", "20", "--d-model", "16")
    assert code == 0, err
    [result] = result_lines(out)
    assert result["variant"] == "standard" and "key-query convolution" not in out


def test_cli_reads_the_authors_format(run_train, tmp_path):
    path = tmp_path / "train.jsonl"
    examples = mta_experiment.LetterBlocks(5, 2).examples(30, np.random.default_rng(3))
    mta_experiment.write_letter_blocks(path, examples)
    assert json.loads(path.read_text().splitlines()[0]) == {"src": examples[0][0], "tgt": examples[0][1]}
    code, out, err = run_train("mta", "--data", path, "--test-data", path, "--steps", "2",
                               "--eval-every", "2", "--d-model", "16")
    assert code == 0, err
    [result] = result_lines(out)
    assert result["metrics"]["blocks"] == 5  # the file's shape, not the flag's default


def test_the_data_file_sets_the_task_shape_without_writing_args(tmp_path):
    path = tmp_path / "test.jsonl"
    examples = mta_experiment.LetterBlocks(6, 3, 7).examples(5, np.random.default_rng(0))
    mta_experiment.write_letter_blocks(path, examples)
    args = train.build_parser().parse_args(["mta", "--test-data", str(path)])
    task, train_examples, test = mta_experiment.mta_data(args)
    assert (task.n_blocks, task.query_letters, task.block_length) == (6, 3, 7)
    assert train_examples is None and len(test) == 5
    assert (args.blocks, args.query_letters, args.block_length) == (4, 2, 5)  # the flags as given


@pytest.mark.parametrize("line", ['{"src": "abcde#ab"}', 'not json', '{"src": "ABCDE#AB", "tgt": "ABCDE"}'])
def test_cli_rejects_a_bad_data_file_in_one_line(run_train, tmp_path, line):
    path = tmp_path / "bad.jsonl"
    path.write_text(line + "\n")
    code, out, err = run_train("mta", "--data", path, "--steps", "1")
    assert code == 2 and err.count("\n") == 1 and "bad.jsonl:1" in err


def test_cli_rejects_impossible_sizes(run_train):
    code, _, err = run_train("mta", "--query-letters", "6", "--steps", "1")
    assert code == 2 and "query letters" in err
    code, _, err = run_train("mta", "--heads", "3", "--steps", "1")
    assert code == 2 and "divisible" in err
