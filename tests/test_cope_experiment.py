"""Tests for experiments/cope_experiment.py (`python train.py cope`): the generators against
independent solvers, the official data format, the command line."""
import json

import numpy as np

from conftest import HAS_MATPLOTLIB, check_result, result_lines
from experiments import cope_experiment


# ------------------------------------------------------------------ the task generators

def test_counting_programs_match_a_reference_interpreter_and_the_official_format():
    task = cope_experiment.CountingTask(n_vars=3, min_statements=3, max_statements=40)
    rng = np.random.default_rng(0)
    allowed = {"pass;"} | {f"{v} = 0 ;" for v in "abc"} | {f"{v} ++;" for v in "abc"}
    for _ in range(300):
        example = task.example(rng)
        statements = [s + ";" for s in example["context"].split(";")[:-1]]
        assert 3 <= len(statements) <= 40
        assert {s.strip() for s in statements} <= allowed
        variable = example["question"].split()[1]
        assert example["question"] == f"print {variable}"
        assert example["answer"] == str(cope_experiment.run_program(example["context"], variable))
        assert 0 <= int(example["answer"]) <= 10
        ids, is_target = task.encode(example)
        assert task.words(ids)[-3:] == ["print", variable, example["answer"]] and is_target[-1]
        assert sum(is_target) == 1


def test_flip_flop_reads_return_the_last_written_bit():
    rng = np.random.default_rng(1)
    for p_ignore in (0.1, 0.8, 0.98):
        task = cope_experiment.FlipFlop(length=20, p_ignore=p_ignore)
        for _ in range(100):
            ids, is_target = task.sample(rng)
            words = task.words(ids)
            assert len(words) == 40 and words[0] == "w" and words[-2] == "r"
            memory = None
            for n in range(0, len(words), 2):
                instruction, bit = words[n], words[n + 1]
                if instruction == "w":
                    memory = bit
                assert is_target[n + 1] == (instruction == "r")
                if instruction == "r":
                    assert bit == memory


def test_selective_copy_targets_are_the_non_blank_tokens_in_order():
    rng = np.random.default_rng(2)
    task = cope_experiment.SelectiveCopy(n_tokens=5, n_blanks=9)
    for _ in range(100):
        ids, is_target = task.sample(rng)
        words = task.words(ids)
        grid = words[: words.index("|")]
        assert len(grid) == 14 and grid.count(".") == 9
        assert [w for w, t in zip(words, is_target) if t] == [w for w in grid if w != "."]


def test_collate_shifts_targets_and_ignores_the_rest():
    inputs, targets = cope_experiment.collate_targets([([5, 6, 7], [False, False, True]), ([5, 8], [False, True])])
    assert inputs.tolist() == [[5, 6], [5, 8]]
    assert targets.tolist() == [[-100, 7], [8, -100]]


# ------------------------------------------------------------------ the command line

TINY = ["--steps", "4", "--eval-every", "2", "--d-model", "16", "--layers", "1", "--batch-size", "8",
        "--test-size", "20", "--max-statements", "6", "--ood-statements", "10"]


def test_default_command_prints_a_valid_result_line(run_train, tmp_path):
    code, out, err = run_train("cope", *TINY, "--out", tmp_path)
    assert code == 0, err
    (result,) = result_lines(out)
    check_result(result, "cope")
    assert result["task"] == "counting" and result["variant"] == "cope"
    assert {"error", "error_ood"} <= set(result["metrics"])
    assert "gates of" in out and "cope gates seen from the last token" in out and "L1H1" in out
    if HAS_MATPLOTLIB:
        assert (tmp_path / "gates.png").exists()


def test_compare_trains_every_variant_and_prints_the_table(run_train):
    code, out, err = run_train("cope", *TINY, "--compare", "--seeds", "1", "--task", "selective-copy")
    assert code == 0, err
    assert [r["variant"] for r in result_lines(out)] == ["cope", "abs", "rope"]
    assert "| task" in out and "selective-copy" in out


def test_flip_flop_run_reports_dense_and_sparse_errors(run_train):
    code, out, err = run_train("cope", *TINY, "--task", "flipflop", "--pos", "rel")
    assert code == 0, err
    (result,) = result_lines(out)
    assert {"error", "error_dense", "error_sparse"} <= set(result["metrics"])


def test_data_file_in_the_official_format_trains_and_evaluates(run_train, tmp_path):
    rng = np.random.default_rng(3)
    path = tmp_path / "count.jsonl"
    lines = [{"context": "pass; c = 0 ; c ++; pass;", "question": "print c", "answer": "1"}]
    lines += [cope_experiment.CountingTask(3, 3, 6).example(rng) for _ in range(30)]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    code, out, err = run_train("cope", *TINY, "--data", path, "--eval-data", path)
    assert code == 0, err
    (result,) = result_lines(out)
    assert "error_file" in result["metrics"]


def test_bad_input_is_one_line_on_stderr(run_train, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"context": "pass; zz = 0 ;", "question": "print zz", "answer": "0"}\n')
    for argv in (["--data", tmp_path / "missing.jsonl"], ["--data", path], ["--pos", "alibi"],
                 ["--max-statements", "2"], ["--task", "flipflop", "--eval-data", path]):
        code, out, err = run_train("cope", *TINY, *argv)
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, argv


def test_a_short_run_lowers_the_loss(run_train):
    code, out, err = run_train("cope", "--steps", "60", "--eval-every", "60", "--d-model", "32",
                               "--layers", "1", "--test-size", "20", "--task", "selective-copy",
                               "--tokens", "3", "--blanks", "3", "--lr", "3e-3")
    assert code == 0, err
    (result,) = result_lines(out)
    assert result["metrics"]["final_loss"] < result["metrics"]["first_loss"] * 0.8
