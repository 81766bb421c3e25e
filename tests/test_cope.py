"""Tests for cope.py (Golovneva et al. 2024): the equations against naive loops and an independent
reference forward pass, the baselines as special cases, the paper's choices one by one, causality
and every dtype. The tasks and the command line: test_cope_experiment.py."""
import contextlib
import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

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


def reference_rope(x, base=10000.0):
    """RoPE written out: dimension k pairs with k + d/2, rotated by t * base^(-2k/d) at position t."""
    out, (T, d) = x.clone(), x.shape[-2:]
    for t in range(T):
        for k in range(d // 2):
            c, s = math.cos(t * base ** (-2 * k / d)), math.sin(t * base ** (-2 * k / d))
            a, b = x[..., t, k], x[..., t, k + d // 2]
            out[..., t, k], out[..., t, k + d // 2] = a * c - b * s, b * c + a * s
    return out


def reference_forward(model, idx):
    """The whole model in plain torch from its weights: pre-norm blocks, sigmoid gates of the scaled
    masked logits, p_ij as a sum over keys j..i, interpolation, unscaled position logits added, tied head."""
    c = model.config
    B, T = idx.shape
    H, d = c.n_head, c.d_model // c.n_head
    x = model.tok_emb.weight[idx]
    if c.pos == "abs":
        x = x + model.pos_emb.weight[:T]
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    i = torch.arange(T)
    norm = lambda x, ln: F.layer_norm(x, (c.d_model,), ln.weight, ln.bias, 1e-5)
    for block in model.blocks:
        attn = block.attn
        q, k, v = (norm(x, block.ln1) @ attn.qkv.weight.T + attn.qkv.bias).split(c.d_model, dim=-1)
        q, k, v = (t.view(B, T, H, d).transpose(1, 2) for t in (q, k, v))
        if c.pos == "rope":
            q, k = reference_rope(q), reference_rope(k)
        logits = (q @ k.transpose(-1, -2) / math.sqrt(d)).masked_fill(~causal, float("-inf"))
        if c.pos in ("cope", "rel"):
            if c.pos == "cope":
                p = torch.stack([torch.sigmoid(logits)[..., j:].sum(-1) for j in range(T)], dim=-1)
            else:
                p = (i[:, None] - i[None, :] + 1).clamp(min=0).to(logits.dtype).expand_as(logits)
            p = p.clamp(max=c.npos_max - 1)
            z = q @ attn.cope.pos_emb[0]                   # q_i . e[n] for every integer n
            lo, hi = p.floor(), p.ceil()
            logits = logits + (p - lo) * z.gather(-1, hi.long()) + (1 - p + lo) * z.gather(-1, lo.long())
        out = (torch.softmax(logits, -1) @ v).transpose(1, 2).reshape(B, T, c.d_model)
        x = x + out @ attn.proj.weight.T + attn.proj.bias
        mlp = block.mlp
        x = x + F.gelu(norm(x, block.ln2) @ mlp[0].weight.T + mlp[0].bias) @ mlp[2].weight.T + mlp[2].bias
    return norm(x, model.ln_f) @ model.tok_emb.weight.T


# ------------------------------------------------------------------ the equations (section 3)

def test_positions_and_interpolated_logits_match_naive_loops():
    cope = random_cope()
    query, logits = masked_logits()
    positions, expected = naive_position_logits(cope, query, logits)
    assert torch.allclose(cope.positions(cope.gates(logits)), positions, atol=1e-5)
    assert torch.allclose(cope(query, logits), expected, atol=1e-4)


def test_position_of_key_j_from_query_i_counts_the_gates_of_keys_j_to_i_both_included():
    cope = random_cope()
    query, logits = masked_logits()
    gates = cope.gates(logits)
    future = ~torch.ones(T, T, dtype=torch.bool).tril()
    assert (gates[:, future] == 0).all() and (cope.positions(gates)[:, future] == 0).all()
    i, j = 5, 2
    for k, counts in [(0, False), (1, False), (2, True), (4, True), (5, True)]:
        changed = logits.clone()
        changed[:, i, k] = 20.0                          # gate of key k, seen from i, opens fully
        p, p_changed = cope.positions(gates)[:, i, j], cope.positions(cope.gates(changed))[:, i, j]
        assert torch.allclose(p_changed - p, (1 - gates[:, i, k]) * counts, atol=1e-5), k
    # only the causal mask keeps future keys out: an unmasked future logit would count
    unmasked = logits.clone()
    unmasked[:, future] = 5.0
    past = ~future
    assert not torch.allclose(cope.positions(cope.gates(unmasked))[:, past], cope.positions(gates)[:, past])


def test_gates_at_one_give_relative_positions_and_relative_logits():
    cope = random_cope(npos=2 * T)
    query, logits = masked_logits()
    all_open = torch.where(torch.isinf(logits), logits, torch.full_like(logits, 50.0))  # sigmoid -> 1
    i = torch.arange(T)
    expected = (i[:, None] - i[None, :] + 1).clamp(min=0).float()
    assert torch.allclose(cope.positions(cope.gates(all_open)), expected.expand(2, T, T))
    assert torch.allclose(relative_positions(T, 2 * T), expected)
    assert torch.allclose(cope(query, all_open), cope.interpolate(query, relative_positions(T, 2 * T)), atol=1e-5)
    assert relative_positions(9, 3)[8, 0] == 2 and relative_positions(9, 3).max() == 2   # clamped too


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


def test_clamped_suffix_sum_passes_the_gradient_through_the_clamp():
    """positions() clamps in place inside SuffixSum: the values are clamp's, the gradient is the
    unclamped sum's (at the top the slope s[top] = 0 stops it; below 0 there is only rounding noise)."""
    x = torch.rand(2, 3, 9, dtype=torch.float64, requires_grad=True)
    top, weight = 2.5, torch.randn(2, 3, 9, dtype=torch.float64)
    got = SuffixSum.apply(x, top)
    assert torch.allclose(got, x.flip(-1).cumsum(-1).flip(-1).clamp(0, top), atol=1e-12)
    assert (got == top).sum() > 0 and (got < top).sum() > 0           # both sides of the clamp
    assert torch.allclose(torch.autograd.grad((got * weight).sum(), x)[0], weight.cumsum(-1), atol=1e-12)


@pytest.mark.parametrize("pos", ["cope", "rel"])
def test_written_out_backwards_give_the_gradients_of_the_reference_forward(pos):
    """SuffixSum's and Interpolate's backward, the additive causal mask: every weight's gradient in
    float64 equals autograd's through the plain formulas of reference_forward, clamped positions included."""
    torch.manual_seed(4)
    config = CoPEConfig(vocab_size=20, block_size=12, d_model=16, n_head=2, npos_max=6, pos=pos)
    model = big_weights(CoPETransformer(config)).double()
    idx, weight = torch.randint(3, 20, (2, 12)), torch.randn(2, 12, 20, dtype=torch.float64)
    params = list(model.parameters())
    got = torch.autograd.grad((model(idx) * weight).sum(), params)
    expected = torch.autograd.grad((reference_forward(model, idx) * weight).sum(), params)
    for (name, _), a, b in zip(model.named_parameters(), got, expected):
        assert torch.allclose(a, b, atol=1e-9), name


class LargestTensor(TorchFunctionMode):
    """Records the most elements of any tensor a torch function returns."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_q_dot_e_is_computed_once_per_integer_position_never_per_pair():
    """The paper's cheap order: q_i . e[n] for every integer n ([T, npos]), then a gather per pair;
    never e[p_ij] per pair ([T, T, head_dim]) nor q_i . e[n] per pair ([T, T, npos])."""
    cope, Tl = random_cope(), 12                         # Tl > NPOS: [T, T] is the largest allowed
    query, logits = masked_logits(T=Tl)
    with LargestTensor() as seen:
        cope(query, logits)
    assert seen.largest <= 2 * Tl * Tl < 2 * Tl * Tl * min(D, NPOS)


# ------------------------------------------------------------------ the model and its paper choices

def big_weights(model, std=0.3):
    """Weights large enough that gates vary between 0 and 1 and every term matters."""
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, std)
    return model


@pytest.mark.parametrize("pos", POSITION_ENCODINGS)
def test_model_matches_an_independent_reference_forward(pos):
    torch.manual_seed(3)
    config = CoPEConfig(vocab_size=20, block_size=12, d_model=16, n_head=2, npos_max=6, pos=pos)
    model = big_weights(CoPETransformer(config)).double()
    idx = torch.randint(3, 20, (2, 10))
    with torch.no_grad():
        assert torch.allclose(model(idx), reference_forward(model, idx), atol=1e-9)


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


def test_rope_rotates_dimension_k_with_k_plus_half_by_position_times_base_power():
    x = torch.randn(2, 6, 8, dtype=torch.float64)
    assert torch.allclose(rope_rotate(x), reference_rope(x), atol=1e-12)
    assert rope_rotate(x.bfloat16()).dtype == torch.bfloat16           # q and k keep their dtype
    assert CoPEConfig().rope_base == 10000.0


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


@pytest.mark.parametrize("pos", POSITION_ENCODINGS)
def test_one_zero_initialised_position_table_per_layer_shared_by_its_heads(pos):
    config = CoPEConfig(vocab_size=20, block_size=16, d_model=16, n_head=4, npos_max=9, pos=pos)
    model = CoPETransformer(config)
    tables = [block.attn.cope.pos_emb for block in model.blocks if block.attn.cope is not None]
    if pos not in ("cope", "rel"):
        assert tables == []
        return
    assert len(tables) == config.n_layer and tables[0] is not tables[1]
    for table in tables:
        assert table.shape == (1, 16 // 4, 9) and (table == 0).all()   # one [head_dim, npos] for all heads
    positional = [n for n, p in model.named_parameters() if "pos_emb" in n]
    assert len(positional) == config.n_layer


def test_absolute_pe_is_a_learned_table_added_to_the_input_embeddings():
    config = CoPEConfig(vocab_size=20, block_size=16, d_model=16, n_head=2, pos="abs")
    model = CoPETransformer(config)
    assert model.pos_emb.weight.shape == (16, 16)
    seen = []
    model.blocks[0].register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    idx = torch.randint(3, 20, (2, 9))
    model(idx)
    assert torch.equal(seen[0], model.tok_emb(idx) + model.pos_emb.weight[:9])


def test_init_is_normal_002_with_zero_biases_and_tied_embeddings():
    torch.manual_seed(0)
    model = CoPETransformer(CoPEConfig(vocab_size=300, d_model=128, n_head=4, pos="abs"))
    assert model.head.weight is model.tok_emb.weight
    for weight in (model.tok_emb.weight, model.pos_emb.weight, model.blocks[0].attn.qkv.weight,
                   model.blocks[1].mlp[2].weight):
        assert abs(weight.std().item() - 0.02) < 0.002 and abs(weight.mean().item()) < 0.002
    assert all((m.bias == 0).all() for m in model.modules() if isinstance(m, torch.nn.Linear) and m.bias is not None)


def test_config_defaults_are_the_documented_sizes_pre_norm_without_dropout():
    config = CoPEConfig()
    assert (config.n_layer, config.n_head, config.d_model, config.d_ff, config.npos_max, config.pos,
            config.dropout) == (2, 4, 64, 256, 64, "cope", 0.0)
    model = CoPETransformer(CoPEConfig(vocab_size=20, block_size=16, d_model=16, n_head=2)).train()
    idx = torch.randint(3, 20, (2, 9))
    assert torch.equal(model(idx), model(idx))                   # no dropout in training mode


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


def test_recorded_gates_have_one_map_per_layer_and_head():
    model = CoPETransformer(CoPEConfig(vocab_size=20, block_size=16, d_model=16, n_head=2))
    model.record(True)
    model(torch.randint(3, 20, (3, 9)))
    gates = model.gates()
    assert gates.shape == (2, 3, 2, 9, 9) and (gates.triu(1) == 0).all()


def test_bad_config_is_refused():
    for bad in ({"pos": "alibi"}, {"d_model": 10, "n_head": 4}, {"npos_max": 1},
                {"pos": "rope", "d_model": 12, "n_head": 4}):
        with pytest.raises(ValueError):
            CoPEConfig(**bad)


# ------------------------------------------------------------------ dtypes

def random_model(pos):
    torch.manual_seed(0)
    model = CoPETransformer(CoPEConfig(vocab_size=20, block_size=64, d_model=16, n_head=2, pos=pos, npos_max=16))
    big_weights(model, std=0.15)
    return model.eval()


@pytest.mark.parametrize("pos", POSITION_ENCODINGS)
@pytest.mark.parametrize("precision, out_dtype, tolerance", [
    ("float32", torch.float32, 1e-5), ("float64", torch.float64, 1e-12),
    ("bfloat16", torch.bfloat16, 0.03), ("autocast", torch.bfloat16, 0.03)])
def test_every_dtype_runs_and_stays_close_to_float64(pos, precision, out_dtype, tolerance):
    model = random_model(pos)
    idx = torch.randint(3, 20, (2, 40))
    with torch.no_grad():
        expected = copy.deepcopy(model).double()(idx)
        if precision in ("float64", "bfloat16"):
            model = model.to(getattr(torch, precision))
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "autocast" else contextlib.nullcontext()
        with autocast:
            got = model(idx)
    assert got.dtype == out_dtype and torch.isfinite(got).all()
    assert (got.double() - expected).abs().max() <= tolerance * expected.abs().max()


@pytest.mark.parametrize("precision", ["bfloat16", "autocast"])
def test_gates_and_positions_stay_float32_in_bf16(precision):
    """A bf16 sum of ~150 gates keeps 8 significant bits: positions would be off by up to 0.5."""
    cope = random_cope(npos=400)
    query, logits = masked_logits(T=300, batch=1)
    logits = logits.bfloat16()
    exact = cope.positions(cope.gates(logits.float()))
    if precision == "bfloat16":
        cope, query = cope.bfloat16(), query.bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "autocast"):
        gates = cope.gates(logits)
        positions = cope.positions(gates)
        position_logits = cope(query.bfloat16(), logits)
    assert gates.dtype == positions.dtype == position_logits.dtype == torch.float32
    assert torch.allclose(positions, exact, atol=1e-4)
    in_bf16 = torch.sigmoid(logits).flip(-1).cumsum(-1).flip(-1).float()   # what float32 avoids
    assert (in_bf16 - exact).abs().max() > 0.1


def test_bf16_model_records_float32_gates_and_attention():
    model = random_model("cope").bfloat16()
    model.record(True)
    model(torch.randint(3, 20, (2, 20)))
    assert model.gates().dtype == torch.float32 and model.blocks[0].attn.last_attention.dtype == torch.float32


@pytest.mark.parametrize("precision", ["float64", "bfloat16", "autocast"])
def test_backward_in_every_dtype_gives_finite_gradients_to_every_weight(precision):
    model = random_model("cope").train()
    if precision != "autocast":
        model = model.to(getattr(torch, precision))
    idx = torch.randint(3, 20, (2, 64))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "autocast"):
        logits = model(idx)
    F.cross_entropy(logits.float().flatten(0, 1), idx.flatten()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert all(block.attn.cope.pos_emb.grad.abs().sum() > 0 for block in model.blocks)
