"""Tests for mta.py (Multi-Token Attention); the letter-block task and CLI: test_mta_experiment.py.

Every check compares with a reference written here (plain loops / torch, float64) or with numbers
worked out by hand from the paper, never with mta.py's own helpers."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F

import mta
from experiments.letter_blocks import LetterBlocks

# 1 - lambda_init, lambda_init = 0.8 - 0.6 exp(-0.3 (l - 1)) (section 3.3), by layer index from 0
# (the paper's l = index + 1): worked out by hand
DEPTH_SCALE = {0: 0.8, 1: 0.6444909324, 2: 0.5292869817, 3: 0.4439417958}


def small_config(**overrides):
    settings = dict(vocab_size=28, max_len=64, n_layers=2, d_model=16, n_heads=4, c_q=3, c_k=5, c_h=2)
    settings.update(overrides)
    return mta.MTAConfig(**settings)


def randomise(module, scale=0.3):
    """Move every parameter away from its init (identity kernels, unit norms, zero biases)."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))


# ---- references -------------------------------------------------------------------------------

def ref_rope(x, theta):
    """x [B, H, T, d]: the pair (x_2m, x_2m+1) at position p turned by the angle p theta^(-2m/d)."""
    T, d = x.shape[-2:]
    out = torch.empty_like(x)
    position = torch.arange(T, dtype=torch.float64)
    for m in range(d // 2):
        angle = (position * theta ** (-2 * m / d)).to(x.dtype)
        a, b = x[..., 2 * m], x[..., 2 * m + 1]
        out[..., 2 * m] = a * angle.cos() - b * angle.sin()
        out[..., 2 * m + 1] = a * angle.sin() + b * angle.cos()
    return out


def ref_rmsnorm(x, weight, eps=1e-5):
    return x / torch.sqrt((x ** 2).mean(-1, keepdim=True) + eps) * weight


def naive_key_query_conv(logits, kernel, c_q, c_k):
    """The practical form of eq. (3), one entry at a time: out[i, j] = sum over i', j' of
    theta_{i',j'} logits[i-i', j-j'], where a logit counts only if it exists and its key is not after
    its own query (Mask_0); entries with j > i are 0."""
    T = logits.size(-1)
    out = torch.zeros_like(logits)
    for i in range(T):
        for j in range(i + 1):
            for di in range(c_q):
                for dj in range(-(c_k // 2), math.ceil(c_k / 2)):
                    qi, kj = i - di, j - dj
                    if 0 <= qi and 0 <= kj <= qi:  # every batch row and head [B, H] at once
                        out[:, :, i, j] += kernel[:, di, dj + c_k // 2] * logits[:, :, qi, kj]
    return out


def ref_head_mix(maps, weights):
    """Section 3.2: within group g of c_h heads, new head a = sum_b weights[g, a, b] head b."""
    out = torch.zeros_like(maps)
    groups, c_h = weights.shape[:2]
    for g in range(groups):
        for a in range(c_h):
            for b in range(c_h):
                out[:, g * c_h + a] += weights[g, a, b] * maps[:, g * c_h + b]
    return out


def ref_attention(layer, x, kq_conv, head_mix, head_norm, layer_index):
    """The MTA layer of section 3 written out: A-hat = q k^T / sqrt(d) with RoPE; pre-softmax
    Softmax(Mask_-inf(mix(Conv(Mask_0(A-hat))))), post-softmax mix(Mask_0(Conv(Softmax(...)))) with no
    renormalisation; per-head RMSNorm with depth scaling or a sigmoid gate; output projection."""
    B, T, C = x.shape
    H, c = layer.n_heads, layer.config
    d = C // H
    q, k, v = ((x @ layer.qkv.weight.T)[..., n * C:(n + 1) * C].reshape(B, T, H, d).transpose(1, 2)
               for n in range(3))
    q, k = ref_rope(q, c.rope_theta), ref_rope(k, c.rope_theta)
    logits = q @ k.transpose(-1, -2) / math.sqrt(d)
    future = torch.ones(T, T, dtype=torch.bool).triu(1)
    if kq_conv == "pre":
        logits = naive_key_query_conv(logits, layer.kq_kernel, c.c_q, c.c_k)
    if head_mix == "pre":
        logits = ref_head_mix(logits, layer.head_weights)  # entries after the query become -inf next
    weights = logits.masked_fill(future, float("-inf")).softmax(-1)
    if kq_conv == "post":
        weights = naive_key_query_conv(weights, layer.kq_kernel, c.c_q, c.c_k)
    if head_mix == "post":
        weights = ref_head_mix(weights, layer.head_weights)
    out = weights @ v
    if head_norm:
        out = ref_rmsnorm(out, layer.norm.weight)
    if head_norm == "depth":
        out = out * DEPTH_SCALE[layer_index]
    if head_norm == "gate":
        out = out * torch.sigmoid(out @ layer.gate.weight.T + layer.gate.bias)
    return out.transpose(1, 2).reshape(B, T, C) @ layer.proj.weight.T


def ref_model(model, idx, layers):
    """Pre-norm decoder: x + attn(norm x), x + SwiGLU(norm x); final norm; tied output embedding.
    layers: (kq_conv, head_mix, head_norm) of each layer."""
    x = model.embed.weight[idx]
    for index, (block, settings) in enumerate(zip(model.blocks, layers)):
        x = x + ref_attention(block.attn, ref_rmsnorm(x, block.attn_norm.weight), *settings, index)
        h = ref_rmsnorm(x, block.ffn_norm.weight)
        ffn = block.ffn
        x = x + (F.silu(h @ ffn.w1.weight.T) * (h @ ffn.w3.weight.T)) @ ffn.w2.weight.T
    return ref_rmsnorm(x, model.norm.weight) @ model.embed.weight.T


# ---- the two MTA operations --------------------------------------------------------------------

@pytest.mark.parametrize("c_q,c_k", [(2, 9), (3, 4), (1, 1)])
def test_key_query_conv_equals_the_formula_entry_by_entry(c_q, c_k):
    logits, kernel = torch.randn(2, 2, 7, 7), torch.randn(2, c_q, c_k)
    expected = naive_key_query_conv(logits, kernel, c_q, c_k)
    assert torch.allclose(mta.key_query_conv(logits, kernel, c_q, c_k), expected, atol=1e-5)


def test_key_query_conv_by_hand_looks_back_over_queries_and_centres_the_keys():
    # one head, T = 3, c_q = 2, c_k = 3: theta_{i',j'} = 1 at (i' = 1, j' = -1) only, i.e. the logit
    # of the previous query and the next key: out[i, j] = logits[i - 1, j + 1] if that key <= i - 1
    logits = torch.arange(1.0, 10.0).view(1, 1, 3, 3)
    kernel = torch.zeros(1, 2, 3)
    kernel[0, 1, 0] = 1.0  # index j' + c_k // 2 = 0
    expected = torch.tensor([[0.0, 0, 0], [0, 0, 0], [5, 0, 0]])  # only (2, 0) <- (1, 1) = 5
    assert torch.equal(mta.key_query_conv(logits, kernel, 2, 3)[0, 0], expected)


@pytest.mark.parametrize("conv", [mta.key_query_conv, mta.key_query_conv_channels_last])
@pytest.mark.parametrize("c_q,c_k", [(2, 9), (3, 4), (1, 1)])
def test_key_query_conv_gradients_equal_autograds_through_the_formula(conv, c_q, c_k):
    """On a CPU key_query_conv runs KeyQueryConv (its backward written out); on CUDA the channels_last
    path with autograd's backward. Both give the naive formula's float64 gradients, even c_k included."""
    logits = torch.randn(2, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    kernel = torch.randn(3, c_q, c_k, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    got = torch.autograd.grad((conv(logits, kernel, c_q, c_k) * weight).sum(), (logits, kernel))
    expected = torch.autograd.grad((naive_key_query_conv(logits, kernel, c_q, c_k) * weight).sum(), (logits, kernel))
    for a, b in zip(got, expected):
        assert torch.allclose(a, b, atol=1e-10)


def test_head_mix_mixes_only_within_a_group():
    maps, weights = torch.randn(2, 4, 5, 5), torch.randn(2, 2, 2)  # 4 heads, groups {0, 1} and {2, 3}
    mixed = mta.head_mix(maps, weights, c_h=2)
    assert torch.allclose(mixed, ref_head_mix(maps, weights), atol=1e-6)
    changed = maps.clone()
    changed[:, 0] += 1.0  # touching head 0 moves heads 0 and 1 only
    delta = (mta.head_mix(changed, weights, 2) - mixed).abs().amax(dim=(0, 2, 3))
    assert delta[:2].min() > 0 and delta[2:].max() == 0


# ---- the layer and the model against the references ---------------------------------------------

@pytest.mark.parametrize("kq_conv,head_mix,head_norm,layer_index", [
    ("pre", "", "", 0), ("post", "", "", 0), ("pre", "pre", "", 0), ("post", "post", "", 0),
    ("pre", "post", "depth", 0), ("post", "pre", "gate", 0), ("", "pre", "depth", 1), ("", "", "gate", 0),
    ("pre", "", "depth", 3)])
def test_layer_equals_the_reference_with_random_mta_parameters(kq_conv, head_mix, head_norm, layer_index):
    torch.manual_seed(1)
    config = small_config(n_layers=4, kq_conv=kq_conv, head_mix=head_mix, head_norm=head_norm)
    layer = mta.MultiTokenAttention(config, layer_index).double()
    randomise(layer)
    x = torch.randn(2, 9, 16, dtype=torch.float64)
    expected = ref_attention(layer, x, kq_conv, head_mix, head_norm, layer_index)
    assert torch.allclose(layer(x), expected, atol=1e-10)


@pytest.mark.parametrize("kq_conv,head_mix", [("pre", "pre"), ("post", "post"), ("", "pre")])
def test_layer_gradients_equal_autograds_through_the_reference(kq_conv, head_mix):
    """The masks as the layer applies them (an added -inf, tril) and KeyQueryConv's written-out backward:
    every weight's float64 gradient equals autograd's through ref_attention."""
    torch.manual_seed(1)
    layer = mta.MultiTokenAttention(small_config(kq_conv=kq_conv, head_mix=head_mix)).double()
    randomise(layer)
    x, weight = torch.randn(2, 9, 16, dtype=torch.float64), torch.randn(2, 9, 16, dtype=torch.float64)
    params = list(layer.parameters())
    got = torch.autograd.grad((layer(x) * weight).sum(), params)
    expected = torch.autograd.grad((ref_attention(layer, x, kq_conv, head_mix, "", 0) * weight).sum(), params)
    for (name, _), a, b in zip(layer.named_parameters(), got, expected):
        assert torch.allclose(a, b, atol=1e-9), name


@pytest.mark.parametrize("layer_index", [0, 1, 2, 3])
def test_depth_scaling_is_one_minus_lambda_init_of_the_layer(layer_index):
    config = small_config(n_layers=4, head_norm="depth", kq_conv="")
    layer = mta.MultiTokenAttention(config, layer_index).double()
    x = torch.randn(1, 6, 16, dtype=torch.float64)
    plain = copy.deepcopy(layer)
    plain.head_norm = ""   # the same layer without the head norm: compare before the projection
    layer.proj, plain.proj = torch.nn.Identity(), torch.nn.Identity()
    heads = plain(x).view(1, 6, 4, 4)
    expected = ref_rmsnorm(heads, 1.0).reshape(1, 6, 16) * DEPTH_SCALE[layer_index]
    assert torch.allclose(layer(x), expected, atol=1e-10)


def test_post_softmax_weights_are_not_renormalised():
    layer = mta.MultiTokenAttention(small_config(kq_conv="post")).double()
    with torch.no_grad():
        layer.kq_kernel.mul_(0.5)  # identity kernel halved: every weight halves, rows sum to 1/2
    layer.keep_maps = True
    layer(torch.randn(1, 7, 16, dtype=torch.float64))
    assert torch.allclose(layer.maps_after, 0.5 * layer.maps_before, atol=1e-12)
    assert torch.allclose(layer.maps_after.sum(-1), torch.full((1, 4, 7), 0.5, dtype=torch.float64))


@pytest.mark.parametrize("settings,layers", [
    (dict(n_layers=3, mta_layers=[1], kq_conv="pre", head_mix="pre", head_norm="depth"),
     [("", "pre", "depth"), ("pre", "pre", "depth"), ("", "pre", "depth")]),
    (dict(n_layers=2, kq_conv="post", head_norm="gate"), [("post", "", "gate"), ("post", "", "gate")]),
    (dict(n_layers=2, mta=False, head_mix="pre", head_norm="depth"), [("", "", ""), ("", "", "")]),
])
def test_model_equals_the_reference_decoder(settings, layers):
    """Pins the pre-norm blocks, SwiGLU, tied output embedding, which layers get the key-query
    convolution (mta_layers; head mixing and head norm act in all) and mta=False turning all off."""
    torch.manual_seed(2)
    model = mta.MTATransformer(small_config(**settings)).double()
    randomise(model)
    idx = torch.randint(0, 28, (2, 10))
    assert torch.allclose(model(idx), ref_model(model, idx, layers), atol=1e-9)


@pytest.mark.parametrize("kq_conv,head_mix", [("pre", ""), ("post", ""), ("pre", "pre"), ("post", "post")])
def test_identity_initialised_kernels_give_standard_attention(kq_conv, head_mix):
    layer = mta.MultiTokenAttention(small_config(kq_conv=kq_conv, head_mix=head_mix)).double()
    x = torch.randn(2, 11, 16, dtype=torch.float64)
    expected = ref_attention(layer, x, "", "", "", 0)  # no MTA at all
    assert torch.allclose(layer(x), expected, atol=1e-10)
    assert layer.kq_kernel.shape == (4, 3, 5)  # one c_q x c_k kernel per head


def test_untrained_mta_model_equals_the_standard_attention_model():
    torch.manual_seed(1)
    with_mta = mta.MTATransformer(small_config())
    standard = mta.MTATransformer(small_config(mta=False))
    missing = standard.load_state_dict(with_mta.state_dict(), strict=False)
    assert all("kq_kernel" in name for name in missing.unexpected_keys) and not missing.missing_keys
    idx = torch.randint(0, 28, (2, 20))
    assert torch.allclose(with_mta(idx), standard(idx), atol=1e-5)


@pytest.mark.parametrize("kq_conv,head_mix,head_norm", [("pre", "pre", "depth"), ("post", "post", "gate"),
                                                        ("pre", "post", "")])
def test_random_kernels_keep_the_layer_causal(kq_conv, head_mix, head_norm):
    layer = mta.MultiTokenAttention(small_config(kq_conv=kq_conv, head_mix=head_mix, head_norm=head_norm))
    randomise(layer)
    x = torch.randn(1, 12, 16)
    for t in range(11):
        changed = x.clone()
        changed[:, t + 1:] = torch.randn_like(changed[:, t + 1:])
        before, after = layer(x), layer(changed)
        assert torch.allclose(before[:, : t + 1], after[:, : t + 1], atol=1e-6)
        assert not torch.allclose(before[:, t + 1], after[:, t + 1])


def test_rmsnorm_by_hand_with_eps_1e5():
    x = torch.tensor([[3e-3, 4e-3]], dtype=torch.float64)  # mean square 12.5e-6, comparable to eps
    expected = x / math.sqrt(12.5e-6 + 1e-5)
    assert torch.allclose(mta.RMSNorm(2).double()(x), expected, rtol=1e-12)


# ---- configuration, initialisation ----------------------------------------------------------------

def test_defaults_are_the_toy_task_settings():
    c = mta.MTAConfig()
    assert (c.vocab_size, c.n_layers, c.d_model, c.n_heads, c.d_ff) == (28, 2, 64, 2, 176)
    assert c.rope_theta == 100_000 and c.dropout == 0.0  # official toy config's theta; dropout: docstring
    assert c.mta and c.mta_layers == [] and c.kq_conv == "pre" and (c.c_q, c.c_k) == (2, 9)
    assert c.head_mix == "" and c.head_norm == ""  # the toy task uses only the key-query convolution
    assert all(hasattr(block.attn, "kq_kernel") for block in mta.MTATransformer(c).blocks)  # [] = all


def test_initial_weights_are_the_official_truncated_normals_with_unit_norms_and_zero_gate_bias():
    # official code (lingua): std 1/sqrt(d_model), 1/sqrt(d_ff) for w2, cut at 3 std (which leaves a
    # standard deviation of 0.9866 std)
    model = mta.MTATransformer(mta.MTAConfig(d_model=256, head_norm="gate"))
    attn = model.blocks[0].attn
    for weight, width in ((attn.qkv.weight, 256), (attn.proj.weight, 256), (model.blocks[1].ffn.w1.weight, 256),
                          (model.blocks[1].ffn.w2.weight, 688), (model.embed.weight, 256), (attn.gate.weight, 256)):
        std = width ** -0.5
        assert weight.abs().max().item() <= 3 * std
        if weight.numel() > 1000:  # the gate's 128 weights: too few to estimate a spread
            assert abs(weight.std().item() / std - 0.9866) < 0.03 and abs(weight.mean().item()) < 0.1 * std
    assert torch.equal(attn.gate.bias, torch.zeros(1)) and torch.equal(attn.norm.weight, torch.ones(128))
    assert torch.equal(model.norm.weight, torch.ones(256))


@pytest.mark.parametrize("settings,word", [(dict(n_layers=2, mta_layers=[2]), "mta_layers"),
                                           (dict(d_model=16, n_heads=3), "divisible"),
                                           (dict(d_model=12, n_heads=4), "even"),
                                           (dict(head_mix="pre", c_h=3), "divisible"),
                                           (dict(c_q=0), "at least 1")])
def test_config_refuses_impossible_settings(settings, word):
    with pytest.raises(ValueError, match=word):
        small_config(**settings)


def test_a_sequence_longer_than_max_len_is_refused():
    model = mta.MTATransformer(small_config(max_len=8))
    model(torch.zeros(1, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="max_len"):
        model(torch.zeros(1, 9, dtype=torch.long))


# ---- dtypes ------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["float64", "float32", "bfloat16", "autocast"])
def test_model_in_each_dtype_is_finite_and_close_to_the_float64_reference(mode):
    torch.manual_seed(3)
    settings = [("pre", "pre", "gate"), ("pre", "pre", "gate")]
    model = mta.MTATransformer(small_config(kq_conv="pre", head_mix="pre", head_norm="gate", max_len=64))
    randomise(model, 0.05)
    idx = torch.randint(0, 28, (2, 24))
    expected = ref_model(copy.deepcopy(model).double(), idx, settings)
    if mode == "autocast":
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(idx)
    else:
        out = model.to(getattr(torch, mode))(idx)
    dtype, tolerance = {"float64": (torch.float64, 1e-10), "float32": (torch.float32, 1e-5),
                        "bfloat16": (torch.bfloat16, 0.03), "autocast": (torch.bfloat16, 0.03)}[mode]
    assert out.dtype == dtype and torch.isfinite(out).all()
    assert (out.double() - expected).abs().max() <= tolerance * expected.abs().max()
    out.float().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_model_on_cuda_under_bf16_autocast_is_close_to_the_float64_reference():
    torch.manual_seed(3)
    model = mta.MTATransformer(small_config(kq_conv="pre", head_mix="pre", head_norm="gate"))
    randomise(model, 0.05)
    idx = torch.randint(0, 28, (2, 24))
    expected = ref_model(copy.deepcopy(model).double(), idx, [("pre", "pre", "gate")] * 2)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = model.cuda()(idx.cuda())
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    assert (out.double().cpu() - expected).abs().max() <= 0.03 * expected.abs().max()


def test_bf16_model_at_the_papers_length_stays_close_with_float32_rope_tables():
    # at position ~300 a bf16 angle is off by up to 1 radian: the tables must stay float32 (an island)
    torch.manual_seed(0)
    model = mta.MTATransformer(small_config(n_layers=1, n_heads=2, max_len=320, mta=False))
    randomise(model, 0.05)
    with torch.no_grad():  # sharp attention, so that the positions matter
        model.blocks[0].attn.qkv.weight.normal_(0, 1.0)
        model.embed.weight.normal_(0, 0.5)
    idx = torch.randint(0, 28, (2, 319))
    expected = ref_model(copy.deepcopy(model).double(), idx, [("", "", "")])
    out = model.bfloat16()(idx)
    assert (out.double() - expected).abs().max() < 0.2 * expected.abs().max()


def test_a_few_steps_on_one_batch_lower_the_loss():
    torch.manual_seed(0)
    model = mta.MTATransformer(small_config(d_model=32))
    tokens, positions, targets = LetterBlocks(3).draw(16, torch.Generator().manual_seed(0))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        logits = model(tokens).gather(1, positions[..., None].expand(-1, -1, 28))
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert model.blocks[0].attn.kq_kernel.grad.abs().sum() > 0  # the kernels learn too
