"""Tests for cope.py (Golovneva et al. 2024): the equations against naive loops, the baselines as
special cases, causality. The tasks and the command line: test_cope_experiment.py."""
import math

import pytest
import torch
import torch.nn.functional as F

from cope import (POSITION_ENCODINGS, CausalSelfAttention, CoPE, CoPEConfig, CoPETransformer, SuffixSum,
                  relative_positions, rope_rotate)

T, D, NPOS = 7, 8, 10


def masked_logits(T=T, D=D, batch=2):
    q, k = torch.randn(batch, T, D), torch.randn(batch, T, D)
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    return q, ((q @ k.transpose(-2, -1)) / math.sqrt(D)).masked_fill(~causal, float("-inf"))


def naive_position_logits(cope, query, logits):
    """The paper's equations one pair at a time: gates, p_ij = sum_{k=j..i} g_ik clamped to
    npos_max - 1, and q_i . e[p] interpolated between floor and ceil."""
    e = cope.pos_emb[0]                                   # [head_dim, npos]
    B, T = logits.shape[0], logits.shape[-1]
    positions, out = torch.zeros(B, T, T), torch.zeros(B, T, T)
    for b in range(B):
        for i in range(T):
            for j in range(T):
                p = sum(torch.sigmoid(logits[b, i, k]) for k in range(j, i + 1)) if j <= i else torch.tensor(0.)
                p = min(float(p), cope.npos_max - 1)
                lo, hi = math.floor(p), math.ceil(p)
                positions[b, i, j] = p
                out[b, i, j] = (p - lo) * (query[b, i] @ e[:, hi]) + (1 - p + lo) * (query[b, i] @ e[:, lo])
    return positions, out


def random_cope(npos=NPOS):
    cope = CoPE(npos, D)
    with torch.no_grad():
        cope.pos_emb.normal_()
    return cope


def test_positions_and_interpolated_logits_match_naive_loops():
    cope = random_cope()
    query, logits = masked_logits()
    positions, expected = naive_position_logits(cope, query, logits)
    assert torch.allclose(cope.positions(cope.gates(logits)), positions, atol=1e-5)
    assert torch.allclose(cope(query, logits), expected, atol=1e-4)


def test_masked_pairs_have_gate_zero_and_do_not_count():
    cope = random_cope()
    query, logits = masked_logits()
    gates = cope.gates(logits)
    future = ~torch.ones(T, T, dtype=torch.bool).tril()
    assert (gates[:, future] == 0).all()
    assert (cope.positions(gates)[:, future] == 0).all()
    # whatever a future key would have said, the positions of past keys are unchanged
    other = logits.clone()
    other[:, future] = 5.0
    past = ~future
    assert not torch.allclose(cope.positions(cope.gates(other))[:, past], cope.positions(gates)[:, past])
    other[:, future] = float("-inf")
    assert torch.equal(cope.positions(cope.gates(other)), cope.positions(gates))


def test_gates_at_one_give_relative_positions_and_relative_logits():
    cope = random_cope(npos=2 * T)
    query, logits = masked_logits()
    all_open = torch.where(torch.isinf(logits), logits, torch.full_like(logits, 50.0))  # sigmoid -> 1
    i = torch.arange(T)
    expected = (i[:, None] - i[None, :] + 1).clamp(min=0).float()
    assert torch.allclose(cope.positions(cope.gates(all_open)), expected.expand(2, T, T))
    assert torch.allclose(relative_positions(T, 2 * T), expected)
    assert torch.allclose(cope(query, all_open), cope.interpolate(query, relative_positions(T, 2 * T)), atol=1e-5)


def test_positions_above_npos_max_are_clamped():
    cope = random_cope(npos=3)
    query, logits = masked_logits(T=9)
    all_open = torch.where(torch.isinf(logits), logits, torch.full_like(logits, 50.0))
    positions = cope.positions(cope.gates(all_open))
    assert positions.max() == 2 and positions[0, 8, 0] == 2      # i - j + 1 = 9 clamped to 2
    logits_int = query @ cope.pos_emb                             # e[2] is used for all far keys
    assert torch.allclose(cope(query, all_open)[:, 8, 0], logits_int[:, 8, 2], atol=1e-5)


def test_position_logits_are_differentiable_in_the_gates():
    cope = random_cope()
    query, logits = masked_logits()
    logits.requires_grad_(True)
    cope(query, logits).sum().backward()
    assert logits.grad[:, torch.ones(T, T, dtype=torch.bool).tril()].abs().sum() > 0


def test_written_out_gradients_match_autograd_of_the_plain_formulas():
    """The suffix sum's hand-written backward, and the regrouped interpolation against the lerp
    between floor and ceil (values and gradients), integer positions and the clamped top included."""
    x = torch.rand(2, 3, 9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(SuffixSum.apply, (x,))
    assert torch.allclose(SuffixSum.apply(x), x.flip(-1).cumsum(-1).flip(-1))
    cope, top = random_cope(), min(NPOS - 1, T)           # p <= i - j + 1 <= T
    query = torch.randn(2, T, D, requires_grad=True)
    positions = torch.rand(2, T, T) * top
    positions[:, 0] = torch.arange(T).float()             # integers
    positions[:, 1] = top                                 # the top
    positions.requires_grad_(True)
    weight = torch.randn(2, T, T)

    def lerp_form():
        logits_int = query @ cope.pos_emb[..., :top + 1]
        floor = positions.detach().floor()
        ceil = (floor + 1).clamp(max=top).long()
        return torch.lerp(logits_int.gather(-1, floor.long()), logits_int.gather(-1, ceil), positions - floor)

    inputs = (query, positions, cope.pos_emb)
    expected, got = lerp_form(), cope.interpolate(query, positions)
    assert torch.allclose(got, expected, atol=1e-5)
    for a, b in zip(torch.autograd.grad((got * weight).sum(), inputs),
                    torch.autograd.grad((expected * weight).sum(), inputs)):
        assert torch.allclose(a, b, atol=1e-4)


def test_rope_preserves_norms_and_depends_only_on_offsets():
    x = torch.randn(12, D)
    assert torch.allclose(rope_rotate(x).norm(dim=-1), x.norm(dim=-1), atol=1e-5)
    q, k = torch.randn(D), torch.randn(D)
    # the same q at every position and the same k at every position: q_i . k_j depends on i - j only
    scores = rope_rotate(q.expand(12, D)) @ rope_rotate(k.expand(12, D)).T
    for offset in range(-5, 6):
        diagonal = torch.diagonal(scores, offset)
        assert torch.allclose(diagonal, diagonal[0].expand_as(diagonal), atol=1e-4)
    assert not torch.allclose(torch.diagonal(scores, 0)[0], torch.diagonal(scores, 3)[0])


def test_attention_layer_with_cope_uses_the_cope_module():
    """The layer's logits are the scaled, masked q.k plus CoPE's position logits (paper's snippet)."""
    torch.manual_seed(1)
    config = CoPEConfig(d_model=16, n_head=2, npos_max=6, pos="cope")
    attention = CausalSelfAttention(config)
    with torch.no_grad():
        attention.cope.pos_emb.normal_()
    x = torch.randn(2, 5, 16)
    q, k, v = attention.qkv(x).view(2, 5, 3, 2, 8).permute(2, 0, 3, 1, 4)
    causal = torch.ones(5, 5, dtype=torch.bool).tril()
    logits = (q @ k.transpose(-2, -1) / math.sqrt(8)).masked_fill(~causal, float("-inf"))
    weights = F.softmax(logits + attention.cope(q, logits), dim=-1)
    expected = attention.proj((weights @ v).transpose(1, 2).reshape(2, 5, 16))
    assert torch.allclose(attention(x), expected, atol=1e-5)


def test_gates_and_positions_stay_float32_under_bf16_autocast():
    """A bf16 sum of ~150 gates keeps 8 significant bits: positions would be off by up to 0.5."""
    cope = random_cope(npos=400)
    query, logits = masked_logits(T=300, batch=1)
    logits = logits.bfloat16()
    exact = cope.positions(cope.gates(logits.float()))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        gates = cope.gates(logits)
        positions = cope.positions(gates)
        position_logits = cope(query.bfloat16(), logits)
    assert gates.dtype == positions.dtype == position_logits.dtype == torch.float32
    assert torch.allclose(positions, exact, atol=1e-4)
    in_bf16 = torch.sigmoid(logits).flip(-1).cumsum(-1).flip(-1).float()   # what float32 avoids
    assert (in_bf16 - exact).abs().max() > 0.1


def test_model_trains_under_bf16_autocast_with_float32_gates():
    torch.manual_seed(0)
    model = CoPETransformer(CoPEConfig(vocab_size=20, block_size=64, d_model=16, n_head=2, npos_max=16))
    for block in model.blocks:
        torch.nn.init.normal_(block.attn.cope.pos_emb)
    model.record(True)
    idx = torch.randint(3, 20, (2, 64))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(idx)
    F.cross_entropy(logits.float().flatten(0, 1), idx.flatten()).backward()
    assert torch.isfinite(logits.float()).all() and model.gates().dtype == torch.float32
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert all(block.attn.cope.pos_emb.grad.abs().sum() > 0 for block in model.blocks)


@pytest.mark.parametrize("pos", POSITION_ENCODINGS)
def test_model_is_causal_for_every_position_encoding(pos):
    model = CoPETransformer(CoPEConfig(vocab_size=20, block_size=16, d_model=16, n_head=2, pos=pos,
                                       npos_max=8)).eval()
    for block in model.blocks:   # non-zero position tables, so that they take part
        if block.attn.cope is not None:
            torch.nn.init.normal_(block.attn.cope.pos_emb)
    idx = torch.randint(3, 20, (2, 12))
    changed = idx.clone()
    changed[:, 7] = (changed[:, 7] + 1 - 3) % 17 + 3
    with torch.no_grad():
        a, b = model(idx), model(changed)
    assert torch.allclose(a[:, :7], b[:, :7], atol=1e-5)
    assert not torch.allclose(a[:, 7:], b[:, 7:])


def test_bad_config_is_refused():
    with pytest.raises(ValueError):
        CoPEConfig(pos="alibi")
    with pytest.raises(ValueError):
        CoPEConfig(d_model=10, n_head=4)
