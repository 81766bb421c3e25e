"""The command line's contract, shown on the transformer experiment (the others test their own)."""
import json
import math
import os
import re
import subprocess
import sys

import pytest
import torch

import train
from conftest import check_result, result_lines

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHORT = ["transformer", "--steps", 6, "--eval-every", 3, "--test-size", 20, "--max-len", 8,
         "--d-model", 16, "--d-ff", 32, "--batch-size", 4, "--device", "cpu"]


@pytest.mark.parametrize("argv, complaint", [
    (["no-such-paper"], "invalid choice"),
    (["transformer", "--steps", 0], "in [1, 10000000]"),
    (["transformer", "--batch-size", -3], "in [1, 16384]"),
    (["transformer", "--batch-size", 1000000000], "in [1, 16384]"),
    (["transformer", "--seed", -1], "in [0, 4294967295]"),
    (["transformer", "--seed", 2**64], "in [0, 4294967295]"),
    (["cope", "--seed", 2**32 - 2, "--seeds", 3], "the last seed"),
    (["transformer", "--device", "xpu"], "unknown device"),
    (["transformer", "--device", "meta"], "unknown device"),
    (["transformer", "--device", "cuda:99"], "no such CUDA device"),
    (["transformer", "--device", "cpu:0"], "unknown device"),
    (["transformer", "--resume", "/nonexistent"], "no such file"),
    (["transformer", "--eval", "/nonexistent", "--resume", "/nonexistent"], "not both"),
    (["transformer", "--lr", "fast"], "expected a number"),
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
    "mta": ["--blocks", 2, "--test-size", 10, "--d-model", 32],
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


# ---------------------------------------------------------------------------------------------
# Robustness: --out checked first, strict JSON, a diverged run, Ctrl-C, --resume and --eval
# ---------------------------------------------------------------------------------------------

def test_out_naming_a_file_or_an_unwritable_place_fails_before_training(run_train, tmp_path):
    existing = tmp_path / "a-file"
    existing.write_text("")
    for out, complaint in ((existing, "a file of that name exists"), (existing / "below", "cannot write")):
        code, out_text, err = run_train(*SHORT, "--out", out)
        assert code == 2 and complaint in err and len(err.strip().splitlines()) == 1
        assert "step" not in out_text  # refused before any training


def strict_json(line):
    """json.loads that refuses NaN and Infinity, as a strict JSON reader does."""
    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")
    return json.loads(line, parse_constant=refuse)


def test_a_diverged_run_ends_with_a_strict_json_result_line_that_says_so(run_train, tmp_path):
    code, out, err = run_train(*SHORT, "--lr", "1e30", "--out", tmp_path)
    assert code == 0 and "Traceback" not in err
    assert "diverged" in out
    result = strict_json(out.strip().splitlines()[-1][len("result: "):])
    assert result["diverged"] is True and result["solved"] is False
    strict_json((tmp_path / "result.json").read_text())


def interrupt_at(monkeypatch, step):
    """Send this process a SIGINT (Ctrl-C) during training step `step`, as a user at the keyboard: the loop
    sees it where it asks, once a step, whether to stop."""
    import signal
    import train
    calls, real = [0], train.rank0_decides

    def deciding(flag, device):
        if sys._getframe(1).f_code.co_name == "training_loop":  # the loop's once-a-step question
            calls[0] += 1
            if calls[0] == step:
                os.kill(os.getpid(), signal.SIGINT)
                flag = True
        return real(flag, device)
    monkeypatch.setattr(train, "rank0_decides", deciding)


def host_reads_of_a_run(monkeypatch, steps, eval_every, poison_at=None):
    """Count every read of a tensor's value by the host (item, tolist, bool, float, int, numpy, cpu) during a
    training_loop of a tiny SGD model whose batches and loss never read one themselves."""
    reads = []
    for name in ("item", "tolist", "__bool__", "__float__", "__int__", "numpy", "cpu"):
        original = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda self, *a, _o=original, _n=name, **k: (reads.append(_n),
                                                                                              _o(self, *a, **k))[1])
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    x = torch.randn(8, 4)
    calls = []

    def loss_fn(m, batch):
        calls.append(1)
        loss = (m(batch) ** 2).mean()
        return loss * float("nan") if len(calls) == poison_at else loss
    run = train.training_loop(model, torch.optim.SGD(model.parameters(), lr=0.01), lambda: x, loss_fn,
                              evaluate=lambda m: {}, solved=lambda metrics: False, steps=steps, eval_every=eval_every)
    monkeypatch.undo()
    return reads, run


def test_the_training_loop_reads_the_loss_once_per_evaluation_not_once_per_step(monkeypatch):
    """No host synchronisation inside the loop: 10 x more steps between the same number of evaluations cost
    no more reads of the device; every loss is still returned, and a non-finite one still ends the run."""
    few, run = host_reads_of_a_run(monkeypatch, steps=20, eval_every=10)
    many, run_many = host_reads_of_a_run(monkeypatch, steps=200, eval_every=100)
    assert len(few) == len(many) <= 2 * 3 and len(run["losses"]) == 20 and len(run_many["losses"]) == 200
    assert all(math.isfinite(loss) for loss in run_many["losses"])
    _, diverged = host_reads_of_a_run(monkeypatch, steps=200, eval_every=100, poison_at=37)
    assert diverged["diverged"] and not diverged["solved"] and diverged["steps"] == 100
    assert math.isnan(diverged["losses"][36]) and all(math.isfinite(v) for v in diverged["losses"][:36])


@pytest.mark.parametrize("name", sorted(TINY))
def test_ctrl_c_saves_the_run_and_resume_ends_where_an_uninterrupted_run_ends(run_train, monkeypatch,
                                                                             tmp_path, name):
    argv = [name, *TINY[name], "--steps", 6, "--eval-every", 2, "--device", "cpu"]
    code, out, _ = run_train(*argv, "--out", tmp_path / "whole")
    assert code == 0
    [whole] = result_lines(out)

    with monkeypatch.context() as patch:
        interrupt_at(patch, 3)
        code, out, err = run_train(*argv, "--out", tmp_path / "cut")
    assert code == 130 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "interrupted at step 3" in err and "--resume" in err
    interrupted = json.loads((tmp_path / "cut" / "result.json").read_text())
    assert interrupted["interrupted"] is True and interrupted["steps"] == 3
    saved = torch.load(tmp_path / "cut" / "model.pt", weights_only=True)
    assert saved["training"]["step"] == 3 and len(saved["training"]["losses"]) == 3
    assert saved["flags"]["name"] == name and saved["config"] and saved["state_dict"]
    assert not [p for p in os.listdir(tmp_path / "cut") if p.endswith(".tmp")]  # written atomically

    code, out, _ = run_train(name, "--resume", tmp_path / "cut", "--device", "cpu")
    assert code == 0
    [resumed] = result_lines(out)
    for result in (whole, resumed):
        result.pop("seconds")
        result["metrics"].pop("ms_per_step", None), result["metrics"].pop("cpu_ms_per_step", None)
    assert resumed == whole

    code, out, _ = run_train(name, "--eval", tmp_path / "cut", "--device", "cpu")
    assert code == 0
    [evaluated] = result_lines(out)
    evaluated.pop("seconds")
    evaluated["metrics"].pop("ms_per_step", None), evaluated["metrics"].pop("cpu_ms_per_step", None)
    assert evaluated["steps"] == whole["steps"] and evaluated["metrics"] == whole["metrics"]


def test_resume_refuses_other_flags_and_other_experiments(run_train, tmp_path):
    run_train(*SHORT, "--out", tmp_path)
    code, _, err = run_train("transformer", "--resume", tmp_path, "--lr", "0.5")
    assert code == 2 and "--lr" in err
    code, _, err = run_train("cope", "--resume", tmp_path)
    assert code == 2 and "transformer" in err
    seeds = tmp_path / "seeds"
    run_train("cope", *TINY["cope"], "--steps", 2, "--seeds", 2, "--device", "cpu", "--out", seeds)
    code, _, err = run_train("cope", "--resume", seeds)
    assert code == 2 and "several seeds" in err
    saved = torch.load(tmp_path / "model.pt", weights_only=True)
    del saved["flags"]["label_smoothing"]  # as if written before that flag existed
    torch.save(saved, tmp_path / "model.pt")
    code, _, err = run_train("transformer", "--resume", tmp_path)
    assert code == 2 and "--label-smoothing" in err and "Traceback" not in err
    (tmp_path / "model.pt").write_bytes(b"not a checkpoint")
    code, _, err = run_train("transformer", "--eval", tmp_path)
    assert code == 2 and "not a checkpoint" in err and "Traceback" not in err


def test_every_experiment_checkpoint_loads_with_weights_only_and_holds_its_vocabulary(run_train, tmp_path):
    for name in sorted(TINY):
        out = tmp_path / name
        assert run_train(name, *TINY[name], "--steps", 2, "--eval-every", 1, "--device", "cpu", "--out", out)[0] == 0
        saved = torch.load(out / "model.pt", weights_only=True)
        assert set(saved) == {"config", "state_dict", "vocab", "flags", "training"}
        assert name == "hopfield" or saved["vocab"], name  # continuous bags need no vocabulary


@pytest.mark.parametrize("name", sorted(TINY))
def test_no_experiment_writes_to_the_command_line_arguments(run_train, monkeypatch, name):
    import train
    experiment, changed = train.EXPERIMENTS[name], []
    real_run = experiment.run

    def watched(args):
        before = dict(vars(args))
        outcome = real_run(args)
        changed.extend(k for k in set(before) | set(vars(args)) if vars(args).get(k, before) != before.get(k, args))
        return outcome
    monkeypatch.setattr(experiment, "run", watched)
    assert run_train(name, *TINY[name], "--steps", 1, "--eval-every", 1, "--device", "cpu")[0] == 0
    assert changed == []


@pytest.mark.parametrize("module", ["torch", "numpy"])
def test_a_missing_dependency_is_one_line_and_exit_2(module):
    # sys.modules[name] = None makes `import name` fail as if it were not installed
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "train.py")
    code = (f"import runpy, sys; sys.modules[{module!r}] = None; sys.argv = ['train.py', 'cope']; "
            f"runpy.run_path({script!r}, run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == f"train.py: error: {module} is not installed: pip install -r requirements.txt"
