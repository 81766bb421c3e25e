"""hopfield.py: the energy and update of section 2, the binary networks it generalises and the layers
of section 3. The experiments of `python train.py hopfield` are tested in test_hopfield_experiment.py."""
import numpy as np
import torch
import torch.nn.functional as F

import hopfield as hf


def random_signs(n, d, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.where(torch.rand(n, d, generator=g) < 0.5, -1.0, 1.0)


def masked(X, fraction=0.5):
    """Each pattern with its last `fraction` of bits unknown (0)."""
    query = X.clone()
    query[:, X.shape[1] - int(fraction * X.shape[1]):] = 0
    return query


def test_update_is_softmax_attention_with_identity_projections():
    xi, X, beta = torch.randn(5, 8), torch.randn(11, 8), 0.7
    by_hand = torch.softmax(beta * xi @ X.T, dim=-1) @ X
    attention = F.scaled_dot_product_attention(xi[None], X[None], X[None], scale=beta)[0]
    assert torch.allclose(hf.update(xi, X, beta), by_hand, atol=1e-6)
    assert torch.allclose(hf.update(xi, X, beta), attention, atol=1e-5)


def test_energy_matches_its_formula_and_never_rises_along_updates():
    X, xi, beta = torch.randn(20, 6, dtype=torch.float64), torch.randn(7, 6, dtype=torch.float64), 2.0
    x0 = xi[0]
    by_hand = (-torch.log(torch.exp(beta * X @ x0).sum()) / beta + 0.5 * x0 @ x0
               + np.log(20) / beta + 0.5 * X.norm(dim=1).max() ** 2)
    assert torch.isclose(hf.energy(xi, X, beta)[0], by_hand)
    energies = [hf.energy(xi, X, beta)]
    for _ in range(30):
        xi = hf.update(xi, X, beta)
        energies.append(hf.energy(xi, X, beta))
    energies = torch.stack(energies)
    assert (energies[1:] <= energies[:-1] + 1e-9).all()
    assert (energies >= -1e-9).all()                          # the constants make E >= 0 (section 2)
    fixed, steps = hf.retrieve(xi, X, beta, max_steps=5000, tol=1e-9)   # converges (section 2)
    assert (steps < 5000).all() and torch.allclose(hf.update(fixed, X, beta), fixed, atol=1e-8)


def test_energy_is_float32_under_bf16_autocast():
    X = random_signs(64, 32)                  # +-1 and 0 are exact in bf16: only the arithmetic differs
    xi = masked(X[:8])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        e = hf.energy(xi.bfloat16(), X.bfloat16(), 1.0)
    assert e.dtype == torch.float32
    assert torch.allclose(e, hf.energy(xi, X, 1.0), rtol=1e-6, atol=1e-5)
    in_bf16 = (-torch.logsumexp(xi.bfloat16() @ X.bfloat16().T, -1) + 0.5 * (xi.bfloat16() ** 2).sum(-1)
               + np.log(64) + 0.5 * 32)         # the same formula in bf16 (M^2 = d for sign patterns)
    assert (in_bf16.float() - e).abs().max() > 1e-3


def test_hopfield_layer_under_bf16_autocast_is_finite_with_float32_association():
    torch.manual_seed(0)
    layer = hf.Hopfield(hf.HopfieldConfig(d_model=16, n_heads=2, update_steps=2))
    R, Y = torch.randn(3, 5, 16), torch.randn(3, 40, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        Z, association = layer(R, Y)
    Z.float().sum().backward()
    assert association.dtype == torch.float32
    assert torch.allclose(association.sum(-1), torch.ones(3, 2, 5), atol=1e-6)
    assert torch.isfinite(Z.float()).all()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in layer.parameters())


def test_separated_pattern_is_retrieved_in_one_step_from_a_noisy_query():
    X = random_signs(200, 64)
    query = X[:10] + 0.5 * torch.randn(10, 64)
    fixed, steps = hf.retrieve(query, X, beta=1.0)
    assert torch.allclose(hf.update(query, X, 1.0), X[:10], atol=1e-4)
    assert torch.allclose(fixed, X[:10], atol=1e-4)
    assert (steps == 1).all()


def test_tiny_beta_sends_every_query_to_the_mean_of_the_patterns():
    X = random_signs(50, 32)
    fixed, _ = hf.retrieve(masked(X[:8]), X, beta=1e-4)
    assert torch.allclose(fixed, X.mean(0).expand(8, -1), atol=1e-2)


def test_classical_network_retrieves_below_capacity_and_fails_well_above():
    d = 100
    few, many = random_signs(3, d), random_signs(60, d)       # 0.03 d and 0.6 d against 0.14 d
    few_out = hf.classical_retrieve(masked(few), hf.classical_weights(few))
    many_out = hf.classical_retrieve(masked(many[:20]), hf.classical_weights(many))
    assert (few_out == few).all()
    assert (many_out == many[:20]).all(-1).float().mean() < 0.1
    # the dense memory with F = exp and the modern network hold 60 patterns easily
    assert (hf.dense_retrieve(masked(many[:20]), many) == many[:20]).all()
    assert (torch.sign(hf.update(masked(many[:20]), many, 1.0)) == many[:20]).all()


def test_hopfield_with_one_update_equals_torch_multihead_attention():
    config = hf.HopfieldConfig(d_model=16, n_heads=4, normalize=False)
    layer = hf.Hopfield(config)
    mha = torch.nn.MultiheadAttention(16, 4, batch_first=True)
    with torch.no_grad():
        q, k, v = mha.in_proj_weight.chunk(3)
        bq, bk, bv = mha.in_proj_bias.chunk(3)
        for linear, weight, bias in ((layer.W_Q, q, bq), (layer.W_K, k, bk), (layer.W_V, v, bv),
                                     (layer.W_O, mha.out_proj.weight, mha.out_proj.bias)):
            linear.weight.copy_(weight)
            linear.bias.copy_(bias)
    R, Y = torch.randn(3, 5, 16), torch.randn(3, 9, 16)
    padding = torch.zeros(3, 9, dtype=torch.bool)
    padding[:, -2:] = True
    Z, association = layer(R, Y, padding)
    expected, weights = mha(R, Y, Y, key_padding_mask=padding, average_attn_weights=False)
    assert torch.allclose(Z, expected, atol=1e-5)
    assert torch.allclose(association, weights, atol=1e-6)


def test_extra_update_steps_iterate_eq3_in_the_key_space():
    layer = hf.Hopfield(hf.HopfieldConfig(d_model=8, update_steps=3, normalize=False))
    R, Y = torch.randn(1, 1, 8), torch.randn(1, 6, 8)
    _, association = layer(R, Y)
    state, stored = layer.W_Q(R)[0], layer.W_K(Y)[0]             # [1, 8], [6, 8] in the key space
    for _ in range(2):
        state = hf.update(state, stored, layer.beta)
    expected = torch.softmax(layer.beta * state @ stored.T, dim=-1)
    assert torch.allclose(association[0, 0], expected, atol=1e-6)


def test_pooling_and_lookup_layers_have_the_documented_shapes():
    config = hf.HopfieldConfig(d_model=12, n_heads=2, n_patterns=3)
    pooled, association = hf.HopfieldPooling(config)(torch.randn(4, 30, 12))
    assert pooled.shape == (4, 3 * 12) and association.shape == (4, 2, 3, 30)
    assert torch.allclose(association.sum(-1), torch.ones(4, 2, 3))
    looked_up, association = hf.HopfieldLayer(config, n_stored=7, d_out=5)(torch.randn(4, 10, 12))
    assert looked_up.shape == (4, 10, 5) and association.shape == (4, 2, 10, 7)


def test_baselines_match_the_size_of_hopfield_pooling():
    sizes = {p: sum(x.numel() for x in hf.MILClassifier(hf.HopfieldConfig(pooling=p)).parameters())
             for p in ("hopfield", "mean", "max")}
    assert abs(sizes["mean"] - sizes["hopfield"]) <= 0.01 * sizes["hopfield"]
    assert sizes["mean"] == sizes["max"]
