import math

import pytest
import torch
import torch.nn.functional as F

import transformer as tf
from transformer import Transformer, TransformerConfig

PAD, BOS, EOS = 0, 1, 2


def small_model(**overrides):
    config = TransformerConfig(**{"vocab_size": 20, "d_model": 16, "n_layers": 2, "n_heads": 2,
                                  "d_ff": 32, "max_len": 32, **overrides})
    return Transformer(config).eval()


@pytest.mark.parametrize("masked", [False, True])
def test_attention_equals_pytorch_sdpa(masked):
    q, k, v = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 7, 8), torch.randn(2, 3, 7, 4)
    mask = torch.rand(2, 1, 5, 7) > 0.3 if masked else None
    if masked:
        mask[..., 0] = True  # every query keeps at least one key
    ours, weights = tf.attention(q, k, v, mask)
    torch.testing.assert_close(ours, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 5))


def test_fused_and_written_out_attention_agree_in_the_whole_model():
    """The model runs eq. (1) through PyTorch's fused kernel; `attention` writes it out. Same
    logits and same gradients, with the padding and causal masks of a real batch."""
    model = small_model().train()
    src = torch.cat([torch.randint(3, 20, (3, 6)), torch.full((3, 2), PAD)], dim=1)
    tgt = torch.randint(3, 20, (3, 7))
    attentions = [m for m in model.modules() if isinstance(m, tf.MultiHeadAttention)]
    runs = []
    for written_out in (False, True):
        for m in attentions:
            m.keep_weights = written_out
        model.zero_grad()
        logits = model(src, tgt)
        logits.square().mean().backward()
        runs.append((logits, [p.grad.clone() for p in model.parameters()]))
    torch.testing.assert_close(runs[0][0], runs[1][0])
    for fused, written in zip(runs[0][1], runs[1][1]):
        torch.testing.assert_close(fused, written)
    assert attentions[-1].weights.shape == (3, 2, 7, 8)  # kept only on the written-out path


def test_positional_encoding_matches_the_formula():
    max_len, d_model = 30, 10
    pe = tf.positional_encoding(max_len, d_model)
    for pos in range(max_len):
        for i in range(d_model // 2):
            angle = pos / 10000 ** (2 * i / d_model)
            assert pe[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-5)
            assert pe[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-5)


def test_decoder_is_causal():
    model = small_model()
    src = torch.randint(3, 20, (2, 6))
    tgt = torch.randint(3, 20, (2, 8))
    changed = tgt.clone()
    changed[:, 5] = (changed[:, 5] + 1 - 3) % 17 + 3  # another non-special token at position 5
    before, after = model(src, tgt), model(src, changed)
    torch.testing.assert_close(before[:, :5], after[:, :5])
    assert not torch.allclose(before[:, 5:], after[:, 5:])


def test_padding_is_ignored():
    model = small_model()
    src, tgt = torch.randint(3, 20, (2, 6)), torch.randint(3, 20, (2, 5))
    padded = torch.cat([src, torch.full((2, 3), PAD)], dim=1)
    torch.testing.assert_close(model(src, tgt), model(padded, tgt), atol=1e-5, rtol=1e-5)
    # what sits under the padding mask changes nothing either: the model reads only non-pad keys
    memory, mask = model.encode(padded)
    other_memory = memory.clone()
    other_memory[:, 6:] = torch.randn(2, 3, 16)
    torch.testing.assert_close(model.decode(tgt, memory, mask), model.decode(tgt, other_memory, mask))


def test_embeddings_and_output_projection_share_one_matrix():
    model = small_model()
    assert [n for n, _ in model.named_parameters() if "embedding" in n] == ["embedding.weight"]
    captured = {}
    model.decoder[-1].register_forward_hook(lambda module, inputs, output: captured.update(h=output))
    logits = model(torch.randint(3, 20, (1, 4)), torch.randint(3, 20, (1, 3)))
    torch.testing.assert_close(logits, captured["h"] @ model.embedding.weight.T)


def test_label_smoothed_loss_by_hand():
    logits = torch.tensor([[[2.0, 0.5, -1.0, 0.0], [0.1, 0.2, 0.3, 0.4]]])
    target = torch.tensor([[1, 0]])  # the second position is padding (pad id 0)
    eps = 0.1
    p = torch.softmax(logits[0, 0], -1)
    expected = -(1 - eps) * math.log(p[1]) - eps * sum(math.log(p[v]) for v in range(4)) / 4
    loss = tf.label_smoothed_loss(logits, target, eps, pad_id=0)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    same = F.cross_entropy(logits.view(-1, 4), target.view(-1), label_smoothing=eps, ignore_index=0)
    assert loss.item() == pytest.approx(same.item(), rel=1e-6)


def test_schedule_gives_the_papers_values():
    # eq. (3) with the paper's d_model 512 and warmup 4000
    assert tf.rate(4000, 512, 4000) == pytest.approx(512 ** -0.5 * 4000 ** -0.5)
    assert tf.rate(1000, 512, 4000) == pytest.approx(512 ** -0.5 * 1000 * 4000 ** -1.5)
    assert tf.rate(16000, 512, 4000) == pytest.approx(512 ** -0.5 * 16000 ** -0.5)
    peak = max(tf.rate(s, 512, 4000) for s in range(1, 20000))
    assert peak == pytest.approx(6.99e-4, rel=1e-3)  # the well-known peak of the base model


def test_beam_of_one_equals_greedy():
    model = small_model()
    src = torch.randint(3, 20, (4, 7))
    src[0, 5:] = PAD
    greedy = tf.greedy_decode(model, src, max_len=9, bos=BOS, eos=EOS)
    beam = tf.beam_search(model, src, beam_size=1, max_len=9, bos=BOS, eos=EOS)
    assert torch.equal(greedy, beam)


def test_wider_beam_finds_a_score_at_least_as_good():
    model = small_model()
    src = torch.randint(3, 20, (3, 6))

    def log_prob(hypothesis, row):
        ids = hypothesis.tolist()
        ids = ids[: ids.index(EOS) + 1] if EOS in ids else ids
        tgt = torch.tensor([[BOS] + ids])
        logp = model(src[row:row + 1], tgt[:, :-1]).log_softmax(-1)[0]
        return sum(logp[t, i].item() for t, i in enumerate(ids)), len(ids)

    greedy = tf.greedy_decode(model, src, max_len=8)
    beam = tf.beam_search(model, src, beam_size=4, max_len=8, alpha=0.0)  # alpha 0: plain log-prob
    for row in range(3):
        assert log_prob(beam[row], row)[0] >= log_prob(greedy[row], row)[0] - 1e-5


def test_config_rejects_heads_that_do_not_divide_the_width():
    with pytest.raises(ValueError):
        TransformerConfig(vocab_size=10, d_model=10, n_heads=3)


def test_a_few_hundred_steps_drive_the_loss_down():
    torch.manual_seed(0)
    model = small_model().train()
    optimizer = tf.make_optimizer(model, lr=3e-3)
    src = torch.randint(3, 20, (8, 6))
    tgt = torch.cat([torch.full((8, 1), BOS), src.flip(1), torch.full((8, 1), EOS)], dim=1)
    losses = []
    for _ in range(200):
        loss = tf.label_smoothed_loss(model(src, tgt[:, :-1]), tgt[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]
    # and the memorised batch decodes exactly
    assert torch.equal(tf.greedy_decode(model.eval(), src, max_len=7)[:, :7], tgt[:, 1:])
