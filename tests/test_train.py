"""The command line's contract, shown on the transformer experiment (the others test their own)."""
import json
import math
import os
import re
import subprocess
import sys

import pytest
import torch

from conftest import check_result, result_lines

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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


# A few steps of every experiment at toy size (the later of two equal flags wins in argparse)
TINY = {
    "transformer": SHORT[1:],
    "bahdanau": ["--test-size", 20, "--max-len", 8, "--embed-dim", 8, "--hidden", 16, "--align-dim", 16,
                 "--maxout", 8, "--batch-size", 4],
    "memn2n": ["--train-size", 100, "--test-size", 20],
    "hopfield": ["--bag-size", 20, "--test-size", 20],
    "cope": ["--test-size", 10, "--d-model", 16, "--max-statements", 8, "--ood-statements", 12],
    "mta": ["--blocks", 2, "--test-size", 10, "--d-model", 16],
}


def progress_losses(stdout):
    return [float(x) for x in re.findall(r"step +\d+ \| loss (\S+)", stdout)]


@pytest.mark.parametrize("name", sorted(TINY))
def test_bfloat16_autocast_trains_every_experiment_on_the_cpu(run_train, name):
    runs = {}
    for dtype in ("float32", "bfloat16"):
        code, out, _ = run_train(name, *TINY[name], "--steps", 3, "--eval-every", 1, "--device", "cpu",
                                 "--dtype", dtype)
        assert code == 0
        assert all(r["dtype"] == dtype for r in result_lines(out))
        runs[dtype] = progress_losses(out)
    assert len(runs["bfloat16"]) == 3 and all(math.isfinite(x) for x in runs["bfloat16"])
    assert runs["bfloat16"] != runs["float32"]  # autocast did run the matmuls in bf16 ...
    assert runs["bfloat16"] == pytest.approx(runs["float32"], rel=0.05)  # ... and the losses agree


def test_two_ranks_on_the_cpu_train_in_step_and_end_with_identical_weights(tmp_path):
    """torchrun, 2 CPU processes, gloo: rank 0 alone prints and writes; both ranks stop at the same
    step (here the first evaluation, every rank told by rank 0) holding identical weights; and those
    differ from one process's, because rank 1 trained on batches of its own."""
    argv = ["cope", *TINY["cope"], "--steps", 6, "--eval-every", 3, "--target", 1.0, "--device", "cpu"]
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    script = os.path.join(ROOT, "tests", "ddp_ranks.py")

    def launch(launcher, keep_dir, *extra):
        os.makedirs(keep_dir)
        done = subprocess.run([sys.executable, *launcher, script, keep_dir, *map(str, argv), *extra],
                              capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    out = launch(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"],
                 str(tmp_path / "ranks"), "--out", str(tmp_path / "out"))
    [result] = result_lines(out)
    assert result["ranks"] == 2 and result["steps"] == 3 and result["solved"]
    assert os.listdir(tmp_path / "out") and json.loads((tmp_path / "out" / "result.json").read_text()) == result
    rank0, rank1 = (torch.load(tmp_path / "ranks" / f"rank{r}.pt") for r in (0, 1))
    assert rank0.keys() == rank1.keys()
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name

    launch([], str(tmp_path / "single"))
    single = torch.load(tmp_path / "single" / "rank0.pt")
    assert any(not torch.allclose(single[name], rank0[name]) for name in rank0)
