"""Tests for experiments/bahdanau_experiment.py: what `run` hands the training loop (Adam, clipping, the
loss, Appendix B.2's length-sorted pools, equal steps for the baseline), the defaults, bad flags, and
the `bahdanau` sub-command's output."""
import inspect
import json

import numpy as np
import pytest
import torch

import bahdanau as bd
import train
from conftest import check_result, result_lines
from experiments import bahdanau_experiment, translation
from experiments.translation import PAD
from test_translation import disjoint, spans

TINY = ["--embed-dim", 8, "--hidden", 8, "--align-dim", 8, "--maxout", 4, "--max-len", 8,
        "--test-size", 30, "--batch-size", 8, "--eval-every", 2, "--device", "cpu"]


def strict_result_lines(stdout):
    """result_lines, refusing NaN and Infinity (not JSON)."""
    def refuse(constant):
        raise ValueError(f"{constant} in a result line")
    return [json.loads(line[len("result: "):], parse_constant=refuse)
            for line in stdout.splitlines() if line.startswith("result: ")]


def test_defaults_are_the_documented_ones():
    args = train.build_parser().parse_args(["bahdanau"])
    assert (args.steps, args.batch_size, args.lr, args.eval_every) == (1200, 64, 4e-3, 100)
    assert (args.embed_dim, args.hidden, args.align_dim, args.maxout) == (32, 64, 64, 32)
    assert args.clip == 1.0 and args.paper_init is False  # B.2: clip the gradient norm at 1
    assert (args.min_len, args.max_len, args.test_size, args.beam, args.target) == (4, 30, 1000, 1, 0.99)


def test_the_rate_is_held_for_70_percent_of_the_steps_then_decays_linearly_to_zero():
    rate = lambda step: bahdanau_experiment.learning_rate(step, 4e-3, 1200)
    assert rate(1) == rate(841) == 4e-3                       # held over the first 70%
    assert rate(1020) == pytest.approx(4e-3 * 181 / 360)      # then linear over the last 360 steps
    assert rate(1200) == pytest.approx(4e-3 / 360) and rate(1200) > 0


def test_run_hands_the_loop_adam_clipping_the_loss_sorted_pools_and_equal_steps(run_train, monkeypatch):
    real, calls = train.training_loop, []

    def recording(*args, **kwargs):
        call = inspect.signature(real).bind(*args, **kwargs).arguments
        # what the closures give now, while the run's loop variables are this variant's
        call["solved at 0"] = call["solved"]({"exact_match": 0.0})
        call["solved at 1"] = call["solved"]({"exact_match": 1.0})
        call["pool"] = [call["next_batch"]() for _ in range(20)]
        calls.append(call)
        return real(**{k: v for k, v in call.items() if " " not in k and k != "pool"})

    monkeypatch.setattr(train, "training_loop", recording)
    # --target 0: RNNsearch is solved at its first evaluation (step 2 of 5)
    code, out, err = run_train("bahdanau", "--steps", 5, "--compare", "--paper-init", "--clip", 0.5,
                               "--target", 0, *TINY)
    assert code == 0, err
    (search, encdec) = calls
    assert type(search["model"]) is bd.RNNSearch and type(encdec["model"]) is bd.RNNEncDec
    for call in calls:
        c = call["model"].config
        assert (c.vocab_size, c.embed_dim, c.hidden, c.align_dim, c.maxout_dim, c.pad) == (149, 8, 8, 8, 4, PAD)
        assert c.paper_init is True
        optimizer = call["optimizer"]
        assert type(optimizer) is torch.optim.Adam and optimizer.defaults["lr"] == 4e-3
        assert call["clip"] == 0.5
        assert [call["lr_at"](k) for k in range(1, 6)] == [bahdanau_experiment.learning_rate(k, 4e-3, 5)
                                                          for k in range(1, 6)]  # over --steps for both
    # RNNsearch stops when solved (>= --target); the baseline trains exactly as many steps, no early stop
    assert search["steps"] == 5 and search["solved at 0"]
    assert encdec["steps"] == 2 and not encdec["solved at 1"]
    assert [r["steps"] for r in result_lines(out)] == [2, 2]
    assert disjoint(spans(search["pool"])) and disjoint(spans(encdec["pool"]))  # B.2's sorted pools
    assert all(torch.equal(a[0], b[0]) for a, b in zip(search["pool"], encdec["pool"]))  # same data
    model = search["model"]
    task = translation.ToyTranslation(4, 8)
    src, tgt = task.collate(task.pairs(8, np.random.default_rng(0)))  # with padding
    # teacher forcing: predict tgt[1:] from tgt[:-1]; PAD targets do not count
    log_p = model(src, tgt[:, :-1]).log_softmax(-1)
    gold = tgt[:, 1:]
    nll = -log_p.gather(-1, gold.unsqueeze(-1)).squeeze(-1)
    expected = nll[gold != PAD].mean()
    assert (gold == PAD).any() and torch.allclose(search["loss_fn"](model, (src, tgt)), expected, atol=1e-6)


def test_cli_compare_prints_results_table_and_alignment(run_train, tmp_path):
    code, out, err = run_train("bahdanau", "--steps", 3, "--compare", "--out", tmp_path, *TINY)
    assert code == 0, err
    results = strict_result_lines(out)
    assert [r["variant"] for r in results] == ["RNNsearch", "RNNencdec"]
    for r in results:
        check_result(r, "bahdanau")
        assert r["steps"] == 3 and "len 4-8" in r["metrics"]
    assert "RNNsearch alignment" in out and "| source length" in out
    saved = json.loads((tmp_path / "result-RNNencdec.json").read_text())
    assert saved["variant"] == "RNNencdec"


def test_cli_beam_decodes_with_the_beam(run_train):
    code, out, err = run_train("bahdanau", "--steps", 2, "--beam", 2, *TINY)
    assert code == 0, err
    assert "beam-2 decoding" in out
    check_result(strict_result_lines(out)[0], "bahdanau")


# the smallest RNNsearch, for runs whose lengths and test size are the point
SMALLEST = ["--embed-dim", 4, "--hidden", 4, "--align-dim", 4, "--maxout", 2, "--batch-size", 2, "--device", "cpu"]


def test_min_len_25_gives_one_bucket_and_strict_json(run_train):
    code, out, err = run_train("bahdanau", "--steps", 1, "--min-len", 25, "--test-size", 4, *SMALLEST)
    assert code == 0, err
    metrics = strict_result_lines(out)[0]["metrics"]
    assert [key for key in metrics if key.startswith("len ")] == ["len 25-30"]
    assert all(isinstance(metrics["len 25-30"][k], float) for k in ("exact_match", "token_accuracy"))


def test_an_empty_length_bucket_is_null_in_the_result_and_a_dash_in_the_table(run_train):
    code, out, err = run_train("bahdanau", "--steps", 1, "--max-len", 25, "--test-size", 1, *SMALLEST)
    assert code == 0, err
    metrics = strict_result_lines(out)[0]["metrics"]
    buckets = [metrics[f"len {b}"] for b in ("4-10", "11-20", "21-25")]
    assert sum(b is None for b in buckets) == 2  # one held-out sentence: two empty buckets
    rows = [line for line in out.splitlines() if line.startswith("| len ")]
    assert len(rows) == 3 and sum(line.count("| -") == 2 for line in rows) == 2


@pytest.mark.parametrize("flags, word", [
    (["--embed-dim", 0], "embed-dim"), (["--embed-dim", 4097], "4096"), (["--hidden", 5000], "hidden"),
    (["--hidden", "x"], "integer"), (["--align-dim", -1], "align-dim"), (["--maxout", 10 ** 6], "maxout"),
    (["--clip", 0], "clip"), (["--clip", "inf"], "clip"), (["--clip", "nan"], "clip"),
])
def test_bad_flags_give_one_line_and_exit_2(run_train, flags, word):
    code, out, err = run_train("bahdanau", *flags, "--steps", 1, "--max-len", 4, "--test-size", 1,
                               "--batch-size", 1, "--device", "cpu")  # cheap, if it were accepted
    assert code == 2 and err.count("\n") == 1 and word in err and "Traceback" not in err + out
