"""Tests for transformer.py: each choice of the paper against a hand computation or a reference
written here from the paper (never against the file's own helpers), the decoders against a table of
probabilities and an exhaustive search, and every float dtype."""
import inspect
import itertools
import math
from types import SimpleNamespace

import numpy as np
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


def a_batch():
    """src [3, 8] with padding on two rows, tgt_in [3, 7] starting with BOS."""
    src = torch.randint(3, 20, (3, 8))
    src[0, 6:], src[1, 3:] = PAD, PAD
    tgt = torch.cat([torch.full((3, 1), BOS), torch.randint(3, 20, (3, 6))], dim=1)
    return src, tgt


# ---- a reference written from the paper: Figure 1, eqs. (1)-(2), sections 3.4, 3.5 and 5.4 ----

def reference_forward(model, src, tgt_in, p_drop=0.0):
    """Logits [B, T, V] and the last decoder layer's encoder-decoder attention [B, h, T, S], from the
    model's weights only. Post-norm LayerNorm(x + Dropout(Sublayer(x))), heads as slices of W^Q, W^K,
    W^V, one shared matrix for both embeddings (x sqrt(d_model)) and the pre-softmax linear."""
    c = model.config
    d, h = c.d_model, c.n_heads
    d_k, E = d // h, model.embedding.weight
    drop = lambda x: F.dropout(x, p_drop, training=p_drop > 0)
    layer_norm = lambda norm, x: F.layer_norm(x, (d,), norm.weight, norm.bias, 1e-5)

    def sinusoids(T):
        pe = torch.zeros(T, d, dtype=torch.float64)
        for pos in range(T):
            for i in range(0, d, 2):
                pe[pos, i] = math.sin(pos / 10000 ** (i / d))
                pe[pos, i + 1] = math.cos(pos / 10000 ** (i / d))
        return pe.to(E.dtype)

    def embed(ids):
        return drop(E[ids] * math.sqrt(d) + sinusoids(ids.size(1)))

    def multi_head(m, x_q, x_kv, allowed):  # allowed [B, Tq, Tk]
        heads, maps = [], []
        for i in range(h):
            rows = slice(i * d_k, (i + 1) * d_k)
            q, k, v = x_q @ m.w_q.weight[rows].T, x_kv @ m.w_k.weight[rows].T, x_kv @ m.w_v.weight[rows].T
            scores = (q @ k.transpose(1, 2) / math.sqrt(d_k)).masked_fill(~allowed, float("-inf"))
            maps.append(scores.softmax(-1))
            heads.append(maps[-1] @ v)
        return drop(torch.cat(heads, -1) @ m.w_o.weight.T), torch.stack(maps, 1)

    def ffn(m, x):
        return drop(torch.relu(x @ m.w_1.weight.T + m.w_1.bias) @ m.w_2.weight.T + m.w_2.bias)

    S, T = src.size(1), tgt_in.size(1)
    src_ok = (src != PAD)[:, None, :]
    x = embed(src)
    for layer in model.encoder:
        x = layer_norm(layer.norm1, x + multi_head(layer.self_attn, x, x, src_ok.expand(-1, S, S))[0])
        x = layer_norm(layer.norm2, x + ffn(layer.ffn, x))
    causal = torch.ones(T, T, dtype=torch.bool).tril() & (tgt_in != PAD)[:, None, :]
    y = embed(tgt_in)
    for layer in model.decoder:
        y = layer_norm(layer.norm1, y + multi_head(layer.self_attn, y, y, causal)[0])
        attended, cross = multi_head(layer.cross_attn, y, x, src_ok.expand(-1, T, S))
        y = layer_norm(layer.norm2, y + attended)
        y = layer_norm(layer.norm3, y + ffn(layer.ffn, y))
    return y @ E.T, cross


def use_written_out_attention(model, on):
    for m in model.modules():
        if isinstance(m, tf.MultiHeadAttention):
            m.keep_weights = on


@pytest.mark.parametrize("written_out", [False, True])
def test_model_equals_the_papers_figure_1_written_out(written_out):
    model = small_model(n_heads=4).double()
    use_written_out_attention(model, written_out)
    src, tgt = a_batch()
    expected, _ = reference_forward(model, src, tgt)
    torch.testing.assert_close(model(src, tgt), expected, rtol=0, atol=1e-6)  # the sinusoid table is float32


def test_dropout_sits_on_embeddings_and_each_sublayer_output_before_the_residual_add():
    """Section 5.4: same random stream, same masks, iff the dropout sites and their order match."""
    model = small_model(dropout=0.3).double().train()
    src, tgt = a_batch()
    torch.manual_seed(5)
    ours = model(src, tgt)
    torch.manual_seed(5)
    expected, _ = reference_forward(model, src, tgt, p_drop=0.3)
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-6)  # the sinusoid table is float32
    assert not torch.allclose(ours, reference_forward(model, src, tgt)[0])  # dropout did act


def test_config_defaults_are_the_documented_sizes():
    c = TransformerConfig(vocab_size=10)
    assert (c.d_model, c.n_layers, c.n_heads, c.d_ff, c.dropout, c.pad_id) == (64, 2, 4, 256, 0.0, 0)


def test_parameter_count_by_hand():
    """N encoder layers (4 d^2 attention without biases, an FFN with biases, 2 LayerNorms), N decoder
    layers (two attentions, 3 LayerNorms), one V x d matrix for both embeddings and the output; no
    extra final LayerNorm (torch.nn.Transformer adds one)."""
    V, d, N, d_ff = 20, 16, 3, 40
    model = small_model(n_layers=N, d_ff=d_ff)
    ffn = 2 * d * d_ff + d_ff + d
    expected = V * d + N * (4 * d * d + ffn + 2 * 2 * d) + N * (8 * d * d + ffn + 3 * 2 * d)
    assert sum(p.numel() for p in model.parameters()) == expected
    assert len(model.encoder) == len(model.decoder) == N


def test_config_rejects_heads_that_do_not_divide_the_width():
    with pytest.raises(ValueError):
        TransformerConfig(vocab_size=10, d_model=10, n_heads=3)


# ---- eq. (1), the masks, the embeddings and the positions ----

def test_attention_by_hand_with_a_mask():
    rng = np.random.default_rng(0)
    q, k, v = rng.normal(size=(3, 4)), rng.normal(size=(5, 4)), rng.normal(size=(5, 2))
    mask = np.ones((3, 5), dtype=bool)
    mask[0, 3:], mask[2, 0] = False, False
    scores = np.where(mask, q @ k.T / 2.0, -np.inf)  # sqrt(d_k) = 2
    weights = np.exp(scores - scores.max(1, keepdims=True))
    weights /= weights.sum(1, keepdims=True)
    out, ours = tf.attention(*(torch.tensor(a) for a in (q, k, v)), torch.tensor(mask))
    np.testing.assert_allclose(ours.numpy(), weights, rtol=1e-12)
    np.testing.assert_allclose(out.numpy(), weights @ v, rtol=1e-12)
    assert (ours[~torch.tensor(mask)] == 0).all()


@pytest.mark.parametrize("masked", [False, True])
def test_attention_equals_pytorch_sdpa(masked):
    q, k, v = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 7, 8), torch.randn(2, 3, 7, 4)
    mask = torch.rand(2, 1, 5, 7) > 0.3 if masked else None
    if masked:
        mask[..., 0] = True  # every query keeps at least one key
    ours, _ = tf.attention(q, k, v, mask)
    torch.testing.assert_close(ours, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))


def test_fused_and_written_out_attention_agree_in_the_whole_model():
    """Same logits and same gradients, with the padding and causal masks of a real batch."""
    model = small_model().train()
    src, tgt = a_batch()
    runs = []
    for written_out in (False, True):
        use_written_out_attention(model, written_out)
        model.zero_grad()
        logits = model(src, tgt)
        logits.square().mean().backward()
        runs.append((logits, [p.grad.clone() for p in model.parameters()]))
    torch.testing.assert_close(runs[0][0], runs[1][0])
    for fused, written in zip(runs[0][1], runs[1][1]):
        torch.testing.assert_close(fused, written)
    assert model.decoder[-1].cross_attn.weights.shape == (3, 2, 7, 8)  # kept on the written-out path


def test_positional_encoding_matches_the_formula():
    max_len, d_model = 30, 10
    pe = tf.positional_encoding(max_len, d_model)
    for pos in range(max_len):
        for i in range(d_model // 2):
            angle = pos / 10000 ** (2 * i / d_model)
            assert pe[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-5)
            assert pe[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-5)


def test_embedding_is_the_shared_matrix_times_sqrt_d_model_plus_the_sinusoids():
    model = small_model()
    ids = torch.tensor([[5, 7, 3]])
    by_hand = model.embedding.weight[ids[0]] * 4.0  # sqrt(16)
    by_hand[:, 0::2] += torch.sin(torch.arange(3.0)[:, None] / 10000 ** (torch.arange(0, 16, 2) / 16))
    by_hand[:, 1::2] += torch.cos(torch.arange(3.0)[:, None] / 10000 ** (torch.arange(0, 16, 2) / 16))
    torch.testing.assert_close(model.embed(ids)[0], by_hand)


def test_a_sequence_longer_than_the_sinusoid_table_is_refused():
    model = small_model(max_len=8)
    model(torch.randint(3, 20, (1, 8)), torch.randint(3, 20, (1, 8)))
    with pytest.raises(ValueError, match="max_len"):
        model(torch.randint(3, 20, (1, 9)), torch.randint(3, 20, (1, 3)))


def test_embedding_init_has_std_one_over_sqrt_d_model():
    model = small_model(vocab_size=2000, d_model=64, n_heads=4)
    assert model.embedding.weight.std().item() == pytest.approx(64 ** -0.5, rel=0.03)


def test_decoder_is_causal():
    model = small_model()
    src, tgt = a_batch()
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


# ---- training: label smoothing, Adam, eq. (3) ----

def test_label_smoothed_loss_by_hand_with_the_papers_epsilon():
    """Section 5.4: 1 - eps on the right token, eps spread over the whole vocabulary; the mean over
    the non-padding positions."""
    logits = torch.tensor([[[2.0, 0.5, -1.0, 0.0], [0.1, 0.2, 0.3, 0.4], [1.0, -2.0, 0.5, 0.0]]])
    target = torch.tensor([[1, 0, 3]])  # the second position is padding (pad id 0)
    eps = 0.1  # the paper's, the default
    expected = 0.0
    for t in (0, 2):
        p = torch.softmax(logits[0, t], -1)
        expected += (-(1 - eps) * math.log(p[target[0, t]]) - eps * sum(math.log(p[v]) for v in range(4)) / 4) / 2
    assert tf.label_smoothed_loss(logits, target).item() == pytest.approx(expected, rel=1e-6)
    same = F.cross_entropy(logits.view(-1, 4), target.view(-1), label_smoothing=0.3, ignore_index=0)
    assert tf.label_smoothed_loss(logits, target, 0.3).item() == pytest.approx(same.item(), rel=1e-6)


def test_optimizer_is_adam_with_the_papers_betas_and_epsilon():
    optimizer = tf.make_optimizer(small_model())
    group = optimizer.param_groups[0]
    assert type(optimizer) is torch.optim.Adam
    assert group["betas"] == (0.9, 0.98) and group["eps"] == 1e-9
    assert not group["weight_decay"] and not group["amsgrad"]


def test_schedule_gives_the_papers_values():
    # eq. (3) with the paper's d_model 512 and (default) warmup 4000
    assert tf.rate(4000, 512) == pytest.approx(512 ** -0.5 * 4000 ** -0.5)
    assert tf.rate(1000, 512) == pytest.approx(512 ** -0.5 * 1000 * 4000 ** -1.5)
    assert tf.rate(16000, 512, 4000) == pytest.approx(512 ** -0.5 * 16000 ** -0.5)
    assert tf.rate(300, 256, 100) == pytest.approx(256 ** -0.5 * 300 ** -0.5)
    peak = max(tf.rate(s, 512, 4000) for s in range(1, 20000))
    assert peak == pytest.approx(6.99e-4, rel=1e-3)  # the well-known peak of the base model


def test_a_hundred_steps_memorise_a_batch():
    torch.manual_seed(0)
    model = small_model().train()
    optimizer = tf.make_optimizer(model, lr=3e-3)
    src = torch.randint(3, 20, (8, 6))
    tgt = torch.cat([torch.full((8, 1), BOS), src.flip(1), torch.full((8, 1), EOS)], dim=1)
    for _ in range(120):
        loss = tf.label_smoothed_loss(model(src, tgt[:, :-1]), tgt[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert torch.equal(tf.greedy_decode(model.eval(), src, max_len=9), tgt[:, 1:])


# ---- decoding (section 6.1) ----

class TableModel:
    """A stand-in for the Transformer: P(next token | source's first token, prefix after BOS) read
    from a table, `rest` for the prefixes the table lacks; 1e-6 for every unnamed token."""
    config = SimpleNamespace(pad_id=PAD)

    def __init__(self, table, rest, vocab_size=6, dtype=torch.float64):
        self.table, self.rest, self.vocab_size, self.dtype = table, rest, vocab_size, dtype

    def encode(self, src):
        return src[:, :1, None].double(), torch.ones(src.size(0), 1, 1, 1, dtype=torch.bool)

    def decode(self, tokens, memory, src_mask):
        probs = torch.full((tokens.size(0), 1, self.vocab_size), 1e-6, dtype=torch.float64)
        for n, ids in enumerate(tokens.tolist()):
            for token, p in self.table.get((int(memory[n, 0, 0]), tuple(ids[1:])), self.rest).items():
                probs[n, 0, token] = p
        return probs.log().to(self.dtype)


def lp(length, alpha):  # Wu et al. 2016, section 7, as the paper's 6.1 uses it
    return ((5 + length) / 6) ** alpha


def test_greedy_never_emits_pad_or_bos_and_pads_after_the_first_eos():
    # source 7: PAD and BOS are the likeliest first tokens; then 3, then EOS. Source 8: never ends.
    table = {(7, ()): {PAD: 0.5, BOS: 0.3, 3: 0.15, EOS: 0.05}, (7, (3,)): {EOS: 0.9}}
    model = TableModel(table, rest={4: 0.6, EOS: 0.4 - 1e-3})
    src = torch.tensor([[7], [8]])
    assert tf.greedy_decode(model, src, max_len=3).tolist() == [[3, EOS, PAD], [4, 4, 4]]
    assert tf.beam_search(model, src, beam_size=1, max_len=3).tolist() == [[3, EOS, PAD], [4, 4, 4]]
    # L is the longest output: decoding stops once every sentence has its EOS
    assert tf.greedy_decode(model, torch.tensor([[7], [7]]), max_len=5).tolist() == [[3, EOS], [3, EOS]]


def test_beam_keeps_finished_hypotheses_and_pads_after_eos():
    table = {(7, ()): {PAD: 0.5, BOS: 0.3, 3: 0.15, EOS: 0.05}, (7, (3,)): {EOS: 0.9}}
    model = TableModel(table, rest={4: 0.6, EOS: 0.4 - 1e-3})
    src = torch.tensor([[7], [8]])
    # source 7: [3, EOS] (0.135) beats [EOS] (0.05); source 8: [EOS] (0.4) beats [4, 4, 4] (0.216)
    assert tf.beam_search(model, src, beam_size=2, max_len=3).tolist() == [[3, EOS], [EOS, PAD]]


def test_live_hypotheses_do_not_push_a_better_finished_one_out_of_the_beam():
    """Beam 3: [EOS] (0.16) finishes at step 1; at step 2 four live ones of 0.21 each would fill the
    beam, and all their continuations end below 0.16. The finished set keeps [EOS]."""
    table = {(7, ()): {3: 0.42, 4: 0.42, EOS: 0.16 - 1e-5},
             (7, (3,)): {3: 0.5, 4: 0.5 - 1e-5}, (7, (4,)): {3: 0.5, 4: 0.5 - 1e-5}}
    model = TableModel(table, rest={3: 0.45, 4: 0.45, EOS: 0.1 - 1e-5})
    assert tf.beam_search(model, torch.tensor([[7]]), beam_size=3, max_len=3, alpha=0.0).tolist() == [[EOS]]


@pytest.mark.parametrize("alpha", [0.6, 1.0])
@pytest.mark.parametrize("ended", [True, False])
def test_length_penalty_decides_between_a_short_and_a_long_hypothesis(alpha, ended):
    """[EOS] with P = s (|Y| = 1) against [3, 3, EOS] with P = 1 - s (|Y| = 3), or against [3, 3, 3]
    cut at max_len 3 (|Y| = 3): the beam picks the larger log P / lp(|Y|), lp(n) = ((5 + n) / 6)^alpha,
    for s on a fine grid across the switch."""
    long = [3, 3, EOS] if ended else [3, 3, 3]
    picks, expected = [], []
    for s in np.linspace(0.05, 0.6, 111):
        model = TableModel({(7, ()): {EOS: s, 3: 1 - s - 1e-5}, (7, (3,)): {3: 1 - 1e-5},
                            (7, (3, 3)): {long[-1]: 1 - 1e-5}}, rest={})
        picks.append(tf.beam_search(model, torch.tensor([[7]]), 2, 3, alpha)[0].tolist())
        expected.append([EOS] if math.log(s) / lp(1, alpha) > math.log(1 - s) / lp(3, alpha) else long)
    assert picks == expected
    assert [EOS] in picks and long in picks  # the grid crosses the switch


def test_each_finished_hypothesis_shrinks_the_beam():
    """GNMT's and bahdanau.py's bookkeeping, beam 2, alpha 2: [EOS] (0.5) finishes at step 1 and takes
    one of the two places, so only [3] (0.3) goes on, and at step 2 only its best extension [3, 4]
    (0.165), which ends as [3, 4, EOS]. [3, 5, 5, 5, 5, 5] (0.135 / lp(6) beats 0.5 / lp(1)) is
    never reached; a beam that kept 2 live hypotheses beside its finished set would return it."""
    table = {(7, ()): {EOS: 0.5, 3: 0.3, 4: 0.2 - 1e-4}, (7, (3,)): {4: 0.55, 5: 0.45 - 1e-5},
             (7, (3, 4)): {EOS: 1 - 1e-5}}
    model = TableModel(table, rest={5: 1 - 1e-5})
    assert tf.beam_search(model, torch.tensor([[7]]), beam_size=2, max_len=6, alpha=2.0).tolist() == [[EOS]]
    # beam 3: [4] survives step 1 and [4, 5, 5, 5, 5, 5] (0.2 / lp(6)) wins
    assert tf.beam_search(model, torch.tensor([[7]]), beam_size=3, max_len=6, alpha=2.0).tolist() == [[4] + [5] * 5]


def test_wide_beam_finds_the_exhaustive_searchs_best():
    """Vocabulary {PAD, BOS, EOS, 3, 4, 5} and 3 tokens at most: 13 sentences end with EOS, 27 are cut
    at 3 tokens. A beam of 40 prunes nothing, so it must return the best of all 40 by
    log P(Y) / lp(Y), with log P computed here by teacher forcing."""
    torch.manual_seed(2)
    model = small_model(vocab_size=6)
    with torch.no_grad():
        model.embedding.weight.mul_(3)  # peaked distributions, so that lengths compete
    src = torch.randint(3, 6, (6, 4))
    candidates = [list(w) + [EOS] for n in range(3) for w in itertools.product([3, 4, 5], repeat=n)]
    candidates += [list(w) for w in itertools.product([3, 4, 5], repeat=3)]
    tgt = torch.tensor([[BOS] + c + [PAD] * (4 - len(c)) for c in candidates])
    picks_differ = False
    for row in range(src.size(0)):
        with torch.no_grad():
            log_probs = model(src[row:row + 1].expand(len(candidates), -1), tgt[:, :-1]).log_softmax(-1)
        log_p = [sum(log_probs[i, t, token].item() for t, token in enumerate(c)) for i, c in enumerate(candidates)]
        best = {alpha: max(range(len(candidates)), key=lambda i: log_p[i] / lp(len(candidates[i]), alpha))
                for alpha in (0.0, 0.6)}
        picks_differ |= best[0.0] != best[0.6]
        for alpha in (0.0, 0.6):
            found = tf.beam_search(model, src[row:row + 1], beam_size=40, max_len=3, alpha=alpha)[0].tolist()
            assert found == candidates[best[alpha]] + [PAD] * (len(found) - len(candidates[best[alpha]]))
    assert picks_differ  # alpha matters on this model: the test sees the length penalty


def test_beam_of_one_equals_greedy():
    model = small_model()
    src = torch.randint(3, 20, (4, 7))
    src[0, 5:] = PAD
    greedy = tf.greedy_decode(model, src, max_len=9, bos=BOS, eos=EOS)
    beam = tf.beam_search(model, src, beam_size=1, max_len=9, bos=BOS, eos=EOS)
    assert torch.equal(greedy, beam)


def test_a_batch_decodes_as_its_sentences_one_by_one():
    model = small_model()
    src = torch.randint(3, 20, (4, 7))
    src[0, 5:], src[2, 2:] = PAD, PAD
    batch = tf.beam_search(model, src, beam_size=3, max_len=6)
    for row in range(4):
        alone = tf.beam_search(model, src[row:row + 1], beam_size=3, max_len=6)[0]
        assert batch[row, :alone.numel()].tolist() == alone.tolist() and (batch[row, alone.numel():] == PAD).all()


def test_beam_defaults_are_the_papers():
    defaults = {name: p.default for name, p in inspect.signature(tf.beam_search).parameters.items()}
    assert defaults["beam_size"] == 4 and defaults["alpha"] == 0.6


# ---- dtypes ----

def test_written_out_attention_keeps_its_softmax_in_float32_for_bfloat16_inputs():
    q, k, v = (torch.randn(2, 5, 8).bfloat16() for _ in range(3))
    out, weights = tf.attention(q, k, v)
    expected = (q @ k.transpose(1, 2) / math.sqrt(8)).double().softmax(-1)  # bf16 scores, exact softmax
    assert out.dtype == torch.bfloat16 and weights.dtype == torch.float32
    torch.testing.assert_close(weights.double(), expected, rtol=0, atol=1e-6)

def test_beam_sums_bfloat16_log_probabilities_in_float32():
    """[3, EOS] beats [4, EOS] by 0.0023 nats; rounded to bfloat16 (spacing 0.004 near log 1/2) the
    step-1 log-probabilities would give the win to [4, EOS]."""
    table = {(7, ()): {3: 1.0, 4: math.exp(-1 / 256)}, (7, (3,)): {EOS: 1.0, 5: math.exp(-5.5)},
             (7, (4,)): {EOS: 1.0, 5: math.exp(-6.0)}}
    model = TableModel(table, rest={}, dtype=torch.bfloat16)
    assert tf.beam_search(model, torch.tensor([[7]]), beam_size=2, max_len=2, alpha=0.0).tolist() == [[3, EOS]]


@pytest.mark.parametrize("dtype, autocast, tolerance", [
    (torch.float32, False, 1e-5), (torch.bfloat16, False, 0.1), (torch.float32, True, 0.1)])
@pytest.mark.parametrize("written_out", [False, True])
def test_dtypes_run_and_match_float64(dtype, autocast, tolerance, written_out):
    model = small_model().double()
    use_written_out_attention(model, written_out)
    src, tgt = a_batch()
    expected = model(src, tgt[:, :-1])
    model.to(dtype)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        logits = model(src, tgt[:, :-1])
        loss = tf.label_smoothed_loss(logits, tgt[:, 1:])
        greedy = tf.greedy_decode(model, src, max_len=5)
        beam = tf.beam_search(model, src, beam_size=2, max_len=5)
    assert logits.dtype == (torch.bfloat16 if autocast else dtype)
    assert loss.dtype == torch.float32 and loss.isfinite()  # the loss's log-softmax in float32
    torch.testing.assert_close(logits.double(), expected, rtol=0, atol=tolerance)
    loss.backward()
    assert all(p.grad.isfinite().all() for p in model.parameters())
    for out in (greedy, beam):
        assert out.dtype == torch.long and ((out >= 3) | (out == EOS) | (out == PAD)).all()
