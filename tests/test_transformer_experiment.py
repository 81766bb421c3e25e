"""Tests for experiments/transformer_experiment.py: the schedule, optimiser, loss and model that the
`transformer` sub-command hands to the training loop, the attention picture, the flags' bounds, and
one short run (tests/test_train.py shows the command line's contract on this experiment)."""
import math

import pytest
import torch
import torch.nn.functional as F

import train
import transformer as tf
from conftest import HAS_MATPLOTLIB, check_result, result_lines
from experiments import transformer_experiment
from experiments.translation import BOS, PAD
from test_translation import spans

TINY = ["--steps", 2, "--eval-every", 2, "--test-size", 20, "--max-len", 8, "--d-model", 16,
        "--d-ff", 32, "--batch-size", 4, "--device", "cpu"]
SMALL = ["--test-size", 5, "--max-len", 8, "--d-model", 16, "--d-ff", 32, "--batch-size", 4, "--device", "cpu"]


class Captured(Exception):
    """Raised by the stand-in training loop: what the run handed to train.training_loop."""


def loop_arguments(monkeypatch, *argv):
    """train.main on `transformer argv`, stopped at the training loop; returns its arguments."""
    def stand_in(model, optimizer, next_batch, loss_fn, **kwargs):
        raise Captured(dict(kwargs, model=model, optimizer=optimizer, next_batch=next_batch, loss_fn=loss_fn))
    monkeypatch.setattr(train, "training_loop", stand_in)
    with pytest.raises(Captured) as caught:
        train.main(["transformer", *map(str, argv)])
    return caught.value.args[0]


# ---- what the run trains with ----

@pytest.mark.parametrize("steps, warmup", [(60, 100), (99, 100), (100, 100), (1, 1), (1, 50), (7, 3)])
def test_learning_rate_stays_positive_and_finite_and_peaks_at_lr(monkeypatch, steps, warmup):
    """--steps below --warmup once gave negative rates (gradient ascent) or a division by zero."""
    lr_at = loop_arguments(monkeypatch, "--steps", steps, "--warmup", warmup, "--lr", 0.01, *SMALL)["lr_at"]
    rates = [lr_at(step) for step in range(1, steps + 1)]
    assert all(math.isfinite(r) and 0 < r <= 0.01 for r in rates)
    assert rates[min(warmup, steps) - 1] == pytest.approx(0.01)  # the peak, where the warmup (capped) ends


def test_default_schedule_is_a_linear_warmup_over_100_steps_then_a_linear_decay_to_zero(monkeypatch):
    lr_at = loop_arguments(monkeypatch, *SMALL)["lr_at"]  # --steps 1600, --warmup 100, --lr 6e-3
    for step in (1, 37, 100):
        assert lr_at(step) == pytest.approx(6e-3 * step / 100)
    for step in (101, 800, 1599, 1600):
        assert lr_at(step) == pytest.approx(6e-3 * (1601 - step) / 1501)


def test_defaults_are_the_documented_ones():
    args = train.build_parser().parse_args(["transformer"])
    assert (args.d_model, args.layers, args.heads, args.d_ff, args.dropout) == (64, 2, 4, 256, 0.0)
    assert (args.label_smoothing, args.warmup, args.steps, args.lr, args.batch_size) == (0.1, 100, 1600, 6e-3, 32)
    assert (args.min_len, args.max_len, args.test_size, args.target) == (4, 30, 1000, 0.99)


def test_the_run_trains_adam_with_the_papers_betas(monkeypatch):
    optimizer = loop_arguments(monkeypatch, *SMALL)["optimizer"]
    assert type(optimizer) is torch.optim.Adam
    assert optimizer.param_groups[0]["betas"] == (0.9, 0.98) and optimizer.param_groups[0]["eps"] == 1e-9


def test_flags_reach_the_model(monkeypatch):
    model = loop_arguments(monkeypatch, *SMALL, "--d-model", 24, "--layers", 3, "--heads", 3, "--d-ff", 40,
                           "--dropout", 0.2)["model"]
    c = model.config
    assert (c.d_model, c.n_layers, c.n_heads, c.d_ff, c.dropout, c.pad_id) == (24, 3, 3, 40, 0.2, PAD)
    assert c.max_len >= 8 + 11  # BOS + up to max-len + 10 decoded tokens fit the sinusoid table


def test_loss_is_label_smoothed_cross_entropy_on_the_outputs_shifted_right(monkeypatch):
    arguments = loop_arguments(monkeypatch, *SMALL, "--label-smoothing", 0.2)
    model, (src, tgt) = arguments["model"], arguments["next_batch"]()
    assert (tgt[:, 0] == BOS).all()
    logits = model(src, tgt[:, :-1])  # section 3.2.3: the decoder reads the target shifted right
    expected = F.cross_entropy(logits.flatten(0, 1), tgt[:, 1:].flatten(), label_smoothing=0.2, ignore_index=PAD)
    torch.testing.assert_close(arguments["loss_fn"](model, (src, tgt)), expected)


def test_batches_are_independent_sentences_not_length_sorted_pools(monkeypatch):
    next_batch = loop_arguments(monkeypatch, *SMALL, "--max-len", 30, "--batch-size", 8)["next_batch"]
    assert sum(hi - lo for lo, hi in spans([next_batch() for _ in range(20)])) > 20 * 10  # sorted: ~1 each


def test_compare_adds_one_head_at_equal_size(monkeypatch, run_train):
    models = []

    def stand_in(model, optimizer, next_batch, loss_fn, **kwargs):
        models.append(model)
        return {"steps": 1, "seconds": 0.0, "solved": False, "metrics": {}, "losses": [1.0]}
    monkeypatch.setattr(train, "training_loop", stand_in)
    code, out, err = run_train("transformer", "--compare", *SMALL)
    assert code == 0, err
    assert [m.config.n_heads for m in models] == [4, 1]  # Table 3, row (A)
    assert len({sum(p.numel() for p in m.parameters()) for m in models}) == 1


# ---- the picture ----

def test_last_cross_attention_is_the_last_layers_encoder_decoder_attention_by_hand():
    torch.manual_seed(1)
    model = tf.Transformer(tf.TransformerConfig(vocab_size=20, d_model=16, n_layers=2, n_heads=2,
                                                d_ff=32, max_len=32)).eval()
    src, tgt_in = torch.randint(3, 20, (1, 6)), torch.randint(3, 20, (1, 4))
    inputs = {}
    cross_attn = model.decoder[-1].cross_attn
    cross_attn.register_forward_hook(lambda module, args, output: inputs.update(y=args[0], memory=args[1]))
    with torch.no_grad():
        weights = transformer_experiment.last_cross_attention(model, src, tgt_in)
        y, memory = inputs["y"][0], inputs["memory"][0]
        by_hand = sum(torch.softmax((y @ cross_attn.w_q.weight[rows].T) @ (memory @ cross_attn.w_k.weight[rows].T).T
                                    / math.sqrt(8), -1) for rows in (slice(0, 8), slice(8, 16))) / 2
    torch.testing.assert_close(weights, by_hand)
    assert not cross_attn.keep_weights  # the fused path again afterwards


# ---- the command line ----

@pytest.mark.parametrize("argv, word", [
    (["--d-model", 0], "--d-model"), (["--d-model", 5000], "--d-model"), (["--d-model", "wide"], "integer"),
    (["--layers", 0], "--layers"), (["--layers", 65], "--layers"),
    (["--heads", 0], "--heads"), (["--heads", 300], "--heads"),
    (["--d-ff", 0], "--d-ff"), (["--d-ff", 20000], "--d-ff"),
    (["--warmup", 0], "--warmup"), (["--warmup", 10 ** 7], "--warmup"),
    (["--dropout", -0.1], "--dropout"), (["--dropout", "nan"], "--dropout"), (["--dropout", 1], "dropout"),
    (["--label-smoothing", -1], "--label-smoothing"), (["--label-smoothing", "nan"], "--label-smoothing"),
    (["--label-smoothing", 1], "--label-smoothing"),
    (["--d-model", 4096, "--layers", 64], "parameters"),
    (["--d-model", 10, "--heads", 3], "divisible"), (["--d-model", 4, "--heads", 8], "divisible"),
])
def test_bad_flags_are_one_line_and_exit_code_2(monkeypatch, run_train, argv, word):
    def no_model(config):  # a flag that slips through fails here, before allocating a huge model
        raise AssertionError(f"a model was built from bad flags: {config}")
    monkeypatch.setattr(tf, "Transformer", no_model)
    code, out, err = run_train("transformer", *TINY, *argv)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and word in err
    assert "Traceback" not in err


def test_cli_run_ends_with_the_attention_picture_and_the_table(run_train, tmp_path):
    code, out, err = run_train("transformer", "--beam", 2, "--out", tmp_path, *TINY)
    assert code == 0, err
    check_result(result_lines(out)[0], "transformer")
    assert "beam-2 decoding" in out and "encoder-decoder attention, last layer" in out
    assert "| source length | transformer exact" in out
    if HAS_MATPLOTLIB:
        assert (tmp_path / "attention.png").exists() and (tmp_path / "loss.png").exists()
