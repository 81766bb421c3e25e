"""Tests for experiments/transformer_experiment.py: the attention picture and the `transformer`
sub-command (tests/test_train.py shows the command line's contract on this experiment)."""
import torch

import transformer as tf
from conftest import HAS_MATPLOTLIB, check_result, result_lines
from experiments import transformer_experiment

TINY = ["--steps", 2, "--eval-every", 2, "--test-size", 20, "--max-len", 8, "--d-model", 16,
        "--d-ff", 32, "--batch-size", 4, "--device", "cpu"]


def test_last_cross_attention_is_a_distribution_over_the_source():
    model = tf.Transformer(tf.TransformerConfig(vocab_size=20, d_model=16, n_layers=2, n_heads=2,
                                                d_ff=32, max_len=32)).eval()
    src, tgt_in = torch.randint(3, 20, (1, 6)), torch.randint(3, 20, (1, 4))
    with torch.no_grad():
        weights = transformer_experiment.last_cross_attention(model, src, tgt_in)
    assert weights.shape == (4, 6)
    torch.testing.assert_close(weights.sum(-1), torch.ones(4))
    assert not model.decoder[-1].cross_attn.keep_weights  # the fused path again afterwards


def test_cli_run_ends_with_the_attention_picture_and_the_table(run_train, tmp_path):
    code, out, err = run_train("transformer", "--beam", 2, "--out", tmp_path, *TINY)
    assert code == 0, err
    check_result(result_lines(out)[0], "transformer")
    assert "beam-2 decoding" in out and "encoder-decoder attention, last layer" in out
    assert "| source length | transformer exact" in out
    if HAS_MATPLOTLIB:
        assert (tmp_path / "attention.png").exists() and (tmp_path / "loss.png").exists()
