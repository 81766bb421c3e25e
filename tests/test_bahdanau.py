"""Tests for bahdanau.py: the alignment model, the encoder ends, the decoder unit, the deep maxout
output, padding and decoding."""
import pytest
import torch
import torch.nn.functional as F

import bahdanau as bd

PAD, BOS, EOS = 0, 1, 2
CONFIG = bd.BahdanauConfig(vocab_size=20, embed_dim=6, hidden=5, align_dim=7, maxout_dim=4)


def sentences(*lengths, seed=0):
    """A PAD-padded batch [B, max(lengths)] of random words (ids 3..19)."""
    g = torch.Generator().manual_seed(seed)
    src = torch.full((len(lengths), max(lengths)), PAD)
    for row, n in enumerate(lengths):
        src[row, :n] = torch.randint(3, CONFIG.vocab_size, (n,), generator=g)
    return src


@pytest.fixture(params=[bd.RNNSearch, bd.RNNEncDec])
def model(request):
    return request.param(CONFIG).eval()


def test_attention_weights_sum_to_one_and_vanish_on_padding():
    attention = bd.AdditiveAttention(5, 10, 7)
    annotations, mask = torch.randn(3, 6, 10), sentences(6, 4, 1) != PAD
    context, weights = attention(torch.randn(3, 5), annotations, mask)
    assert torch.allclose(weights.sum(-1), torch.ones(3))
    assert (weights[~mask] == 0).all() and (weights[mask] > 0).all()
    assert context.shape == (3, 10)


def test_attention_follows_eq_6_and_the_context_is_the_weighted_sum():
    attention = bd.AdditiveAttention(5, 10, 7)
    s_prev, annotations, mask = torch.randn(2, 5), torch.randn(2, 4, 10), sentences(4, 3) != PAD
    context, weights = attention(s_prev, annotations, mask)
    W_a, U_a, v_a = attention.W_a.weight, attention.U_a.weight, attention.v_a.weight[0]
    for i in range(2):
        e = torch.stack([v_a @ torch.tanh(W_a @ s_prev[i] + U_a @ h) for h in annotations[i]])
        alpha = torch.softmax(e[mask[i]], 0)
        assert torch.allclose(weights[i, mask[i]], alpha, atol=1e-6)
        assert torch.allclose(context[i], (alpha[:, None] * annotations[i, mask[i]]).sum(0), atol=1e-6)


def reference_gru_direction(rnn, x, suffix):
    """torch's GRU equations for one direction of `rnn`, by hand, over x [T, m]; final state."""
    W_ih, W_hh = getattr(rnn, "weight_ih_l0" + suffix), getattr(rnn, "weight_hh_l0" + suffix)
    b_ih, b_hh = getattr(rnn, "bias_ih_l0" + suffix), getattr(rnn, "bias_hh_l0" + suffix)
    h = torch.zeros(rnn.hidden_size)
    for x_t in x:
        ir, iz, in_ = (W_ih @ x_t + b_ih).chunk(3)
        hr, hz, hn = (W_hh @ h + b_hh).chunk(3)
        r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
        h = (1 - z) * torch.tanh(in_ + r * hn) + z * h
    return h


def test_s0_and_the_fixed_context_come_from_the_two_ends_of_the_birnn(model):
    src = sentences(5, 3)
    memory = model.encode(src)
    for row, n in enumerate([5, 3]):
        x = model.encoder.embed(src[row, :n])
        backward_h1 = reference_gru_direction(model.encoder.rnn, x.flip(0), "_reverse")  # read n..1
        forward_hT = reference_gru_direction(model.encoder.rnn, x, "")
        s0 = torch.tanh(model.W_s.weight @ backward_h1 + model.W_s.bias)  # s_0 = tanh(W_s <-h_1)
        assert torch.allclose(memory.s0[row], s0, atol=1e-5)
        assert torch.allclose(memory.fixed[row], torch.cat([forward_hT, backward_h1]), atol=1e-5)


def test_decoder_unit_follows_appendix_a22():
    unit = bd.GatedUnit(6, 10, 5)
    ey, c, s = torch.randn(6), torch.randn(10), torch.randn(5)
    W, C = unit.from_y.weight.split(5), unit.from_c.weight.split(5)
    b = unit.from_y.bias.split(5)
    U_z, U_r = unit.U_zr.weight.split(5)
    z = torch.sigmoid(W[0] @ ey + b[0] + U_z @ s + C[0] @ c)
    r = torch.sigmoid(W[1] @ ey + b[1] + U_r @ s + C[1] @ c)
    s_tilde = torch.tanh(W[2] @ ey + b[2] + unit.U.weight @ (r * s) + C[2] @ c)  # reset before U
    expected = (1 - z) * s + z * s_tilde                                       # z weighs the new
    assert torch.allclose(unit(unit.from_y(ey[None]), c[None], s[None])[0], expected, atol=1e-6)


def test_maxout_takes_the_max_over_consecutive_pairs(model):
    s, ey, c = torch.randn(3, 5), torch.randn(3, 6), torch.randn(3, 10)
    t_tilde = model.U_o(s) + model.V_o(ey) + model.C_o(c)
    t = torch.stack([torch.maximum(t_tilde[:, 2 * k], t_tilde[:, 2 * k + 1]) for k in range(4)], 1)
    assert torch.allclose(model.readout(s, ey, c), model.W_o(t), atol=1e-6)


def test_padding_changes_nothing(model):
    src, tgt_in = sentences(7, 4), sentences(5, 5, seed=1)
    together = model(src, tgt_in)
    alone = model(src[1:, :4], tgt_in[1:])
    assert torch.allclose(together[1:], alone, atol=1e-5)


def test_teacher_forcing_equals_the_decoding_steps(model):
    src, tgt_in = sentences(6, 3), sentences(5, 5, seed=1)
    logits, weights = model(src, tgt_in, return_weights=True)
    memory, s = model.encode(src), model.encode(src).s0
    for i in range(tgt_in.size(1)):
        step_logits, s, step_weights = model.step(tgt_in[:, i], s, memory)
        assert torch.allclose(logits[:, i], step_logits, atol=1e-5)
        if weights is not None:
            assert torch.allclose(weights[:, i], step_weights, atol=1e-6)


def test_rnnencdec_has_no_alignment_and_rnnsearch_starts_uniform_with_paper_init():
    src, tgt_in = sentences(6, 3), sentences(4, 4, seed=1)
    assert bd.RNNEncDec(CONFIG)(src, tgt_in, return_weights=True)[1] is None
    paper = bd.RNNSearch(bd.BahdanauConfig(**dict(vars(CONFIG), paper_init=True)))
    _, weights = paper(src, tgt_in, return_weights=True)
    assert torch.allclose(weights[0], torch.full((4, 6), 1 / 6))           # v_a = 0 (B.1)
    assert torch.allclose(weights[1, :, :3], torch.full((4, 3), 1 / 3))


def test_beam_of_one_equals_greedy(model):
    src = sentences(6, 4, 5, 2, seed=3)
    cut = lambda row: row[: row.index(EOS) + 1] if EOS in row else row
    greedy = [cut(row) for row in bd.greedy_decode(model, src, 8).tolist()]
    beam = [cut(row) for row in bd.beam_search(model, src, 1, 8).tolist()]
    assert greedy == beam
    wide = bd.beam_search(model, src, 4, 8)
    assert wide.shape[0] == 4 and wide.dtype == torch.long


def test_short_training_lowers_the_loss(model):
    torch.manual_seed(0)
    src, tgt = sentences(6, 5, 4, 6, seed=4), sentences(6, 5, 4, 6, seed=5)
    tgt = torch.cat([torch.full((4, 1), BOS), tgt], 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    losses = []
    for _ in range(30):
        loss = F.cross_entropy(model(src, tgt[:, :-1]).flatten(0, 1), tgt[:, 1:].flatten(),
                               ignore_index=PAD)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
