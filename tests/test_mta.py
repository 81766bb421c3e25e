"""Tests for mta.py (Multi-Token Attention); the letter-block task and CLI: test_mta_experiment.py."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import mta
from experiments import mta_experiment


def small_config(**overrides):
    settings = dict(vocab_size=mta_experiment.LetterBlocks.vocab_size, max_len=64, n_layers=2, d_model=16,
                    n_heads=4, c_q=3, c_k=5, c_h=2)
    settings.update(overrides)
    return mta.MTAConfig(**settings)


def randomise_mta_parameters(layer):
    with torch.no_grad():
        for name in ("kq_kernel", "head_weights"):
            if hasattr(layer, name):
                getattr(layer, name).normal_()


def naive_key_query_conv(logits, kernel, c_q, c_k):
    """The practical form of eq. (3), one entry at a time: out[i, j] = sum over i', j' of
    theta_{i',j'} logits[i-i', j-j'], where a logit counts only if it exists and its key is not after
    its own query (Mask_0); entries with j > i are 0."""
    B, H, T, _ = logits.shape
    out = torch.zeros_like(logits)
    for b in range(B):
        for h in range(H):
            for i in range(T):
                for j in range(i + 1):
                    total = 0.0
                    for di in range(c_q):
                        for dj in range(-(c_k // 2), math.ceil(c_k / 2)):
                            qi, kj = i - di, j - dj
                            if 0 <= qi and 0 <= kj <= qi:
                                total += kernel[h, di, dj + c_k // 2] * logits[b, h, qi, kj]
                    out[b, h, i, j] = total
    return out


@pytest.mark.parametrize("c_q,c_k", [(2, 9), (3, 4), (1, 1)])
def test_key_query_conv_equals_the_formula_entry_by_entry(c_q, c_k):
    logits, kernel = torch.randn(2, 2, 7, 7), torch.randn(2, c_q, c_k)
    expected = naive_key_query_conv(logits, kernel, c_q, c_k)
    assert torch.allclose(mta.key_query_conv(logits, kernel, c_q, c_k), expected, atol=1e-5)


def test_head_mix_mixes_only_within_a_group():
    maps, weights = torch.randn(2, 4, 5, 5), torch.randn(2, 2, 2)  # 4 heads, groups {0, 1} and {2, 3}
    mixed = mta.head_mix(maps, weights, c_h=2)
    expected = torch.stack([sum(weights[h // 2, h % 2, b] * maps[:, 2 * (h // 2) + b] for b in range(2))
                            for h in range(4)], dim=1)
    assert torch.allclose(mixed, expected, atol=1e-6)
    changed = maps.clone()
    changed[:, 0] += 1.0  # touching head 0 moves heads 0 and 1 only
    delta = (mta.head_mix(changed, weights, 2) - mixed).abs().amax(dim=(0, 2, 3))
    assert delta[:2].min() > 0 and delta[2:].max() == 0


@pytest.mark.parametrize("kq_conv,head_mix", [("pre", ""), ("post", ""), ("pre", "pre"), ("post", "post")])
def test_identity_kernels_give_standard_attention(kq_conv, head_mix):
    layer = mta.MultiTokenAttention(small_config(kq_conv=kq_conv, head_mix=head_mix))
    layer.keep_maps = True
    x = torch.randn(2, 11, 16)
    out = layer(x)
    # identical weights to plain causal softmax attention ...
    assert torch.allclose(layer.maps_after, layer.maps_before, atol=1e-6)
    # ... and the same output as PyTorch's attention with the same projections and RoPE
    q, k, v = layer.qkv(x).view(2, 11, 3, 4, 4).permute(2, 0, 3, 1, 4)
    rope = mta.rope_tables(11, 4, layer.config.rope_theta, x.device)
    reference = F.scaled_dot_product_attention(mta.apply_rope(q, *rope), mta.apply_rope(k, *rope), v,
                                               is_causal=True)
    assert torch.allclose(out, layer.proj(reference.transpose(1, 2).reshape(2, 11, 16)), atol=1e-5)


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
    randomise_mta_parameters(layer)
    x = torch.randn(1, 12, 16)
    for t in range(11):
        changed = x.clone()
        changed[:, t + 1:] = torch.randn_like(changed[:, t + 1:])
        before, after = layer(x), layer(changed)
        assert torch.allclose(before[:, : t + 1], after[:, : t + 1], atol=1e-6)
        assert not torch.allclose(before[:, t + 1], after[:, t + 1])


def test_layer_under_bf16_autocast_is_finite_and_close_to_float32():
    torch.manual_seed(0)
    layer = mta.MultiTokenAttention(small_config(head_mix="pre", head_norm="gate"))
    randomise_mta_parameters(layer)
    x = torch.randn(2, 24, 16)
    expected = layer(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x)
    out.float().sum().backward()
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()
    assert torch.allclose(out.float(), expected, atol=0.05 * expected.abs().max().item())
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in layer.parameters())


def test_a_few_steps_on_one_batch_lower_the_loss():
    torch.manual_seed(0)
    model = mta.MTATransformer(small_config(d_model=32))
    tokens, positions, targets = mta_experiment.LetterBlocks(3).batch(16, np.random.default_rng(0))
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
