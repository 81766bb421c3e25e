"""Tests for bahdanau.py, each against a hand computation written here from the paper (Appendix A,
B.1) or a hand-built case: the BiRNN encoder, the alignment model, the gated decoder, the deep maxout
output, RNNencdec's fixed context, the paper's initialisation, padding, dtypes and the two decoders."""
from typing import NamedTuple
from types import SimpleNamespace

import numpy as np
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


def test_default_config_has_the_documented_toy_sizes_and_torch_init():
    c = bd.BahdanauConfig()
    assert (c.vocab_size, c.embed_dim, c.hidden, c.align_dim, c.maxout_dim, c.pad) == (149, 32, 64, 64, 32, 0)
    assert c.paper_init is False


# ---- the encoder (3.2, A.2.1) ----

def reference_gru_states(rnn, x, suffix):
    """torch's GRU equations for one direction of `rnn`, by hand, over x [T, m]: every state [T, n].
    (nn.GRU's z weighs the old state: the mirror of the paper's, as bahdanau.py says.)"""
    W_ih, W_hh = getattr(rnn, "weight_ih_l0" + suffix), getattr(rnn, "weight_hh_l0" + suffix)
    b_ih, b_hh = getattr(rnn, "bias_ih_l0" + suffix), getattr(rnn, "bias_hh_l0" + suffix)
    h, states = torch.zeros(rnn.hidden_size), []
    for x_t in x:
        ir, iz, in_ = (W_ih @ x_t + b_ih).chunk(3)
        hr, hz, hn = (W_hh @ h + b_hh).chunk(3)
        r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
        h = (1 - z) * torch.tanh(in_ + r * hn) + z * h
        states.append(h)
    return torch.stack(states)


def reference_annotations(model, words):
    """h_j = [->h_j ; <-h_j] for one unpadded sentence: one embedding E read by both directions."""
    x = model.encoder.embed.weight[words]
    forward = reference_gru_states(model.encoder.rnn, x, "")
    backward = reference_gru_states(model.encoder.rnn, x.flip(0), "_reverse").flip(0)
    return forward, backward


def test_annotations_are_both_directions_of_a_birnn_per_word_and_zero_on_padding(model):
    src = sentences(5, 3)
    memory = model.encode(src)
    for row, n in enumerate([5, 3]):
        forward, backward = reference_annotations(model, src[row, :n])
        assert torch.allclose(memory.annotations[row, :n], torch.cat([forward, backward], 1), atol=1e-5)
        assert (memory.annotations[row, n:] == 0).all()
        assert memory.mask[row].tolist() == [True] * n + [False] * (5 - n)


def test_s0_is_tanh_ws_of_the_first_backward_state_and_the_fixed_context_both_ends(model):
    src = sentences(5, 3)
    memory = model.encode(src)
    for row, n in enumerate([5, 3]):
        forward, backward = reference_annotations(model, src[row, :n])
        s0 = torch.tanh(model.W_s.weight @ backward[0] + model.W_s.bias)  # s_0 = tanh(W_s <-h_1)
        assert torch.allclose(memory.s0[row], s0, atol=1e-5)
        # RNNencdec's c: ->h_Tx (last REAL word) beside <-h_1 (see bahdanau.py's docstring)
        assert torch.allclose(memory.fixed[row], torch.cat([forward[-1], backward[0]]), atol=1e-5)


def test_source_and_target_embeddings_are_separate_tables(model):
    assert model.encoder.embed.weight.data_ptr() != model.embed_target.weight.data_ptr()
    assert model.encoder.embed.weight.shape == model.embed_target.weight.shape == (20, 6)


# ---- the alignment model (eq. 5, 6; A.1.2) ----

def test_attention_follows_eq_6_and_the_context_is_the_weighted_sum():
    attention = bd.AdditiveAttention(5, 10, 7)
    s_prev, annotations, mask = torch.randn(2, 5), torch.randn(2, 4, 10), sentences(4, 3) != PAD
    context, weights = attention(s_prev, annotations, mask)  # annotations nonzero on padding too
    W_a, U_a, v_a = attention.W_a.weight, attention.U_a.weight, attention.v_a.weight[0]
    assert W_a.shape == (7, 5) and U_a.shape == (7, 10)
    # no biases in eq. (6) (one on v_a would even be invisible: softmax ignores a shift)
    assert attention.W_a.bias is None and attention.U_a.bias is None and attention.v_a.bias is None
    for i in range(2):
        e = torch.stack([v_a @ torch.tanh(W_a @ s_prev[i] + U_a @ h) for h in annotations[i]])
        alpha = torch.softmax(e[mask[i]], 0)
        assert torch.allclose(weights[i, mask[i]], alpha, atol=1e-6)
        assert (weights[i, ~mask[i]] == 0).all()
        assert torch.allclose(context[i], (alpha[:, None] * annotations[i, mask[i]]).sum(0), atol=1e-6)


def test_ua_hj_is_computed_once_per_sentence_not_per_target_word():
    model = bd.RNNSearch(CONFIG).eval()
    calls = []
    model.attention.U_a.register_forward_hook(lambda *_: calls.append(1))
    src = sentences(6, 3)
    memory = model.encode(src)
    assert torch.allclose(memory.keys, memory.annotations @ model.attention.U_a.weight.T)
    calls.clear()
    model(src, sentences(5, 5, seed=1))  # 5 target words
    assert len(calls) == 1


# ---- the decoder (A.2.2) ----

def test_decoder_unit_follows_appendix_a22():
    unit = bd.GatedUnit(6, 10, 5)
    ey, c, s = torch.randn(6), torch.randn(10), torch.randn(5)
    W, C = unit.from_y.weight.split(5), unit.from_c.weight.split(5)
    b = unit.from_y.bias.split(5)
    U_z, U_r = unit.U_zr.weight.split(5)
    z = torch.sigmoid(W[0] @ ey + b[0] + U_z @ s + C[0] @ c)                    # C_z c_i
    r = torch.sigmoid(W[1] @ ey + b[1] + U_r @ s + C[1] @ c)                    # C_r c_i
    s_tilde = torch.tanh(W[2] @ ey + b[2] + unit.U.weight @ (r * s) + C[2] @ c)  # reset before U
    expected = (1 - z) * s + z * s_tilde                                       # z weighs the new
    assert torch.allclose(unit(unit.from_y(ey[None]), c[None], s[None])[0], expected, atol=1e-6)


def test_maxout_takes_the_max_over_consecutive_pairs(model):
    s, ey, c = torch.randn(3, 5), torch.randn(3, 6), torch.randn(3, 10)
    t_tilde = model.U_o(s) + model.V_o(ey) + model.C_o(c)
    t = torch.stack([torch.maximum(t_tilde[:, 2 * k], t_tilde[:, 2 * k + 1]) for k in range(4)], 1)
    assert torch.allclose(model.readout(s, ey, c), model.W_o(t), atol=1e-6)


def reference_forward(model, words, tgt_in):
    """Appendix A for one sentence, written out step by step: logits [T, V], alignments [T, Tx]."""
    forward, backward = reference_annotations(model, words)
    h = torch.cat([forward, backward], 1)
    s = torch.tanh(model.W_s.weight @ backward[0] + model.W_s.bias)
    att, dec = getattr(model, "attention", None), model.decoder
    W, b, C = dec.from_y.weight.split(5), dec.from_y.bias.split(5), dec.from_c.weight.split(5)
    U_z, U_r = dec.U_zr.weight.split(5)
    logits, alignments = [], []
    for y_prev in tgt_in:
        ey = model.embed_target.weight[y_prev]
        if att is None:                         # RNNencdec: one c for every i
            c = torch.cat([forward[-1], backward[0]])
        else:                                   # RNNsearch: eq. (6) from s_{i-1}, then eq. (5)
            e = torch.stack([att.v_a.weight[0] @ torch.tanh(att.W_a.weight @ s + att.U_a.weight @ h_j)
                             for h_j in h])
            alpha = torch.softmax(e, 0)
            alignments.append(alpha)
            c = alpha @ h
        # deep output from s_{i-1}, E y_{i-1}, c_i; maxout over consecutive pairs
        t_tilde = (model.U_o.weight @ s + model.U_o.bias + model.V_o.weight @ ey + model.C_o.weight @ c)
        logits.append(model.W_o.weight @ t_tilde.view(-1, 2).max(1).values + model.W_o.bias)
        z = torch.sigmoid(W[0] @ ey + b[0] + U_z @ s + C[0] @ c)
        r = torch.sigmoid(W[1] @ ey + b[1] + U_r @ s + C[1] @ c)
        s = (1 - z) * s + z * torch.tanh(W[2] @ ey + b[2] + dec.U.weight @ (r * s) + C[2] @ c)
    return torch.stack(logits), (torch.stack(alignments) if alignments else None)


def test_forward_equals_appendix_a_written_out(model):
    src, tgt_in = sentences(6, 3), sentences(5, 5, seed=1)
    logits, weights = model(src, tgt_in, return_weights=True)
    for row, n in enumerate([6, 3]):
        expected, alignments = reference_forward(model, src[row, :n], tgt_in[row])
        assert torch.allclose(logits[row], expected, atol=1e-5)
        if alignments is None:
            assert weights is None
        else:
            assert torch.allclose(weights[row, :, :n], alignments, atol=1e-5)
            assert (weights[row, :, n:] == 0).all()


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


# ---- initialisation (B.1) ----

@pytest.mark.parametrize("model_class", [bd.RNNSearch, bd.RNNEncDec])
def test_paper_init_follows_appendix_b1(model_class):
    config = bd.BahdanauConfig(paper_init=True)  # the default sizes: enough weights for the stds
    model, n = model_class(config), config.hidden
    seen = set()

    def normal(name, std):
        p = dict(model.named_parameters())[name].detach().double()
        seen.add(name)
        assert abs(p.mean()) < 5 * std / p.numel() ** 0.5, name
        assert abs(p.std() / std - 1) < 0.12, name

    def orthogonal(name, blocks):
        p = dict(model.named_parameters())[name].detach().double()
        seen.add(name)
        assert p.shape == (blocks * n, n)
        for block in p.split(n):  # one n x n orthogonal matrix per gate
            assert torch.allclose(block @ block.T, torch.eye(n, dtype=torch.float64), atol=1e-5), name

    if model_class is bd.RNNSearch:
        normal("attention.W_a.weight", 0.001)
        normal("attention.U_a.weight", 0.001)
        assert (model.attention.v_a.weight == 0).all()
        seen.add("attention.v_a.weight")
    for suffix in ["", "_reverse"]:
        orthogonal("encoder.rnn.weight_hh_l0" + suffix, 3)
        normal("encoder.rnn.weight_ih_l0" + suffix, 0.01)
    orthogonal("decoder.U_zr.weight", 2)
    orthogonal("decoder.U.weight", 1)
    for name in ["encoder.embed.weight", "embed_target.weight", "W_s.weight", "decoder.from_y.weight",
                 "decoder.from_c.weight", "U_o.weight", "V_o.weight", "C_o.weight", "W_o.weight"]:
        normal(name, 0.01)
    for name, p in model.named_parameters():
        if "bias" in name:
            assert (p == 0).all(), name
            seen.add(name)
    assert seen == {name for name, _ in model.named_parameters()}


def test_paper_init_starts_the_alignment_exactly_uniform_and_default_init_does_not():
    src, tgt_in = sentences(6, 3), sentences(4, 4, seed=1)
    paper = bd.RNNSearch(bd.BahdanauConfig(**dict(vars(CONFIG), paper_init=True)))
    _, weights = paper(src, tgt_in, return_weights=True)
    assert torch.allclose(weights[0], torch.full((4, 6), 1 / 6))           # v_a = 0 (B.1)
    assert torch.allclose(weights[1, :, :3], torch.full((4, 3), 1 / 3))
    default = bd.RNNSearch(CONFIG)                                          # torch's init
    assert (default.attention.v_a.weight != 0).all() and (default.W_o.bias != 0).any()
    assert not torch.allclose(default(src, tgt_in, return_weights=True)[1][0], weights[0])


# ---- dtypes ----

@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-5), (torch.float64, 0.0),
                                              (torch.bfloat16, 0.05)])
@pytest.mark.parametrize("model_class", [bd.RNNSearch, bd.RNNEncDec])
def test_forward_and_decoding_in_each_weight_dtype_match_float64(model_class, dtype, tolerance):
    reference = model_class(CONFIG).double().eval()
    src, tgt_in = sentences(6, 3), sentences(5, 5, seed=1)
    expected = reference(src, tgt_in)
    model = model_class(CONFIG).eval()
    model.load_state_dict(reference.state_dict())
    model.to(dtype)
    logits, weights = model(src, tgt_in, return_weights=True)
    assert logits.dtype == dtype and torch.isfinite(logits).all()
    assert (logits.double() - expected).abs().max() <= tolerance * max(1.0, expected.abs().max())
    if weights is not None:  # the alignment softmax is a float32 island for bf16
        assert weights.dtype == torch.promote_types(dtype, torch.float32)
        assert torch.allclose(weights.sum(-1).double(), torch.ones(2, 5, dtype=torch.float64), atol=1e-6)
    log_p = bd.next_word_log_probs(logits[:, 0], PAD, BOS)  # beam scores: a float32 island
    assert log_p.dtype == torch.promote_types(dtype, torch.float32) and (log_p[:, [PAD, BOS]] == -torch.inf).all()
    for out in [bd.greedy_decode(model, src, 6), bd.beam_search(model, src, 3, 6)]:
        assert out.dtype == torch.long and out.size(0) == 2


@pytest.mark.parametrize("model_class", [bd.RNNSearch, bd.RNNEncDec])
def test_autocast_bf16_forward_is_close_to_float64_and_backward_is_finite(model_class):
    model = model_class(CONFIG)
    src, tgt_in = sentences(6, 3), sentences(5, 5, seed=1)
    expected = model_class(CONFIG).double()
    expected.load_state_dict(model.state_dict())
    expected = expected(src, tgt_in)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, weights = model(src, tgt_in, return_weights=True)
        decoded = bd.beam_search(model.eval(), src, 2, 6)
    assert torch.isfinite(logits).all() and decoded.dtype == torch.long
    assert (logits.double() - expected).abs().max() <= 0.05 * max(1.0, expected.abs().max())
    if weights is not None:
        assert weights.dtype == torch.float32  # the float32 island of the alignment softmax
    logits.float().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_a_few_adam_steps_halve_the_loss_on_four_sentences(model):
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


# ---- decoding: a stand-in model whose next-word probabilities are a table of the prefix ----

class TableMemory(NamedTuple):
    s0: torch.Tensor

    def repeat(self, k):
        return self


class TableModel:
    """The state is (first source word, BOS, y_1, ..., y_{i-1}); step's logits are table(state)."""

    def __init__(self, table, vocab=7):
        self.table, self.vocab, self.config = table, vocab, SimpleNamespace(pad=PAD)

    def encode(self, src):
        return TableMemory(src[:, :1])

    def step(self, y_prev, s, memory):
        s = torch.cat([s, y_prev[:, None]], 1)
        assert (s[:, 1] == BOS).all()  # every hypothesis starts from BOS
        return torch.tensor([self.table(tuple(row)) for row in s.tolist()], dtype=torch.float64), s, None


def probabilities(choices, vocab=7):
    """{word: p} -> logits over the vocabulary (the words not named: p ~ 1e-9)."""
    return [float(np.log(choices.get(w, 1e-9))) for w in range(vocab)]


def test_greedy_and_beam_pad_after_the_first_eos_and_never_emit_pad_or_bos():
    A, B, C = 3, 4, 5

    def table(state):
        first, prefix = state[0], state[2:]
        if EOS in prefix or PAD in prefix:  # after the end: EOS, PAD and BOS most likely
            return probabilities({EOS: 0.5, PAD: 0.3, BOS: 0.2})
        plan = [A, EOS] if first == 10 else [A, B, C, EOS]
        if list(prefix) != plan[:len(prefix)]:  # off the plan: never ends
            return probabilities({PAD: 0.4, BOS: 0.3, 6: 0.2, 3: 0.1})
        return probabilities({PAD: 0.4, BOS: 0.3, plan[len(prefix)]: 0.2, 6: 0.1})  # PAD, BOS banned

    src = torch.tensor([[10, 11, 12], [20, PAD, PAD]])
    expected = [[A, EOS, PAD, PAD], [A, B, C, EOS]]
    assert bd.greedy_decode(TableModel(table), src, max_len=10).tolist() == expected  # stops at 4
    assert bd.beam_search(TableModel(table), src, 2, max_len=10).tolist() == expected


def test_next_word_log_probs_renormalise_over_the_words_a_hypothesis_may_emit():
    logits = torch.randn(3, 7)
    log_p = bd.next_word_log_probs(logits, PAD, BOS)
    allowed = [w for w in range(7) if w not in (PAD, BOS)]
    assert (log_p[:, [PAD, BOS]] == -torch.inf).all()
    assert torch.allclose(log_p[:, allowed], logits[:, allowed].log_softmax(-1))


def test_unfinished_hypotheses_end_at_max_len_without_eos():
    table = lambda state: probabilities({3: 0.6, 4: 0.4, EOS: 1e-30})
    src = torch.tensor([[5, 6]])
    assert bd.greedy_decode(TableModel(table), src, max_len=4).tolist() == [[3, 3, 3, 3]]
    assert bd.beam_search(TableModel(table), src, 3, max_len=4).tolist() == [[3, 3, 3, 3]]


def test_a_beam_of_two_finds_the_sentence_greedy_misses():
    A, B, C, D = 3, 4, 5, 6
    tables = {(): {A: 0.6, B: 0.4}, (A,): {C: 0.4, D: 0.3, EOS: 0.3}, (B,): {EOS: 0.99, C: 0.01}}
    table = lambda state: probabilities(tables.get(state[2:], {EOS: 1.0}))
    src = torch.tensor([[9]])
    # greedy: A (.6) C (.4) EOS = .24; beam 2 also keeps B (.4), whose EOS (.396) wins
    assert bd.greedy_decode(TableModel(table), src, 5).tolist() == [[A, C, EOS]]
    assert bd.beam_search(TableModel(table), src, 1, 5).tolist() == [[A, C, EOS]]
    assert bd.beam_search(TableModel(table), src, 2, 5).tolist() == [[B, EOS]]


def test_beam_ranks_finished_sentences_by_total_log_probability_without_length_penalty():
    A, C, D = 3, 5, 6
    tables = {(): {EOS: 0.3, A: 0.7}, (A,): {EOS: 0.415, C: 0.3, D: 0.285}}
    table = lambda state: probabilities(tables.get(state[2:], {EOS: 1.0}))
    # [EOS] has p .3 > [A EOS] .2905; any length normalisation (mean, or GNMT's lp) prefers [A EOS]
    assert bd.beam_search(TableModel(table), torch.tensor([[9]]), 2, 5).tolist() == [[EOS]]


def test_a_finished_hypothesis_leaves_the_beam_which_shrinks():
    A, B, X, Y, Z, W, Q, R, q1, q2, q3 = range(3, 14)
    flat = {EOS: 0.1, q1: 0.32, q2: 0.3, q3: 0.28}
    tables = {(): {A: 0.45, B: 0.43, EOS: 0.12}, (A,): {X: 0.9, W: 0.1}, (B,): {Z: 0.6, Y: 0.4},
              (A, X): {EOS: 0.2, Q: 0.8}, (B, Z): {EOS: 0.3, R: 0.7}, (A, X, Q): flat, (B, Z, R): flat}
    model = TableModel(lambda state: probabilities(tables.get(state[2:], {EOS: 1.0}), 14), 14)
    src = torch.tensor([[9]])
    # width 3: [EOS] (.12) finishes at step 1, so only 2 live hypotheses follow, A X (.405) and B Z
    # (.258): B Y (.172), whose EOS would win at .172, is dropped. Width 4 keeps it.
    assert bd.beam_search(model, src, 3, 5).tolist() == [[EOS]]
    assert bd.beam_search(model, src, 4, 5).tolist() == [[B, Y, EOS]]


def reference_beam(log_p, width, max_len):
    """The docstring's rule in plain Python: keep the `width - finished` best extensions; those that
    end with EOS leave the beam; the best total log-probability (finished or alive at max_len) wins."""
    live, finished = [(0.0, ())], []
    for _ in range(max_len):
        extensions = sorted(((score + lp, prefix + (w,)) for score, prefix in live
                             for w, lp in enumerate(log_p(prefix)) if w not in (PAD, BOS)), reverse=True)
        live = []
        for score, prefix in extensions[:width - len(finished)]:
            (finished if prefix[-1] == EOS else live).append((score, prefix))
        if not live:
            break
    return list(max(finished + live)[1])


def test_beam_search_equals_a_reference_beam_on_random_tables():
    vocab = 7
    for seed in range(25):
        def log_p(prefix):  # random logits of the prefix; PAD and BOS out of reach
            logits = np.random.default_rng([seed, *prefix]).normal(size=vocab) * 2
            logits[[PAD, BOS]] = -50.0
            return (logits - np.log(np.exp(logits).sum())).tolist()
        model = TableModel(lambda state: log_p(tuple(state[2:])), vocab)
        for width in [2, 3]:
            expected = reference_beam(log_p, width, 5)
            got = bd.beam_search(model, torch.tensor([[9, 9]]), width, 5)[0].tolist()
            assert got[:len(expected)] == expected and set(got[len(expected):]) <= {PAD}, (seed, width)


def test_beam_of_one_equals_greedy(model):
    src = sentences(6, 4, 5, 2, seed=3)
    assert torch.equal(bd.beam_search(model, src, 1, 8), bd.greedy_decode(model, src, 8))
