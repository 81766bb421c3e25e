"""hopfield.py: the energy and update of section 2, the binary networks it generalises and the layers
of section 3, each against a hand computation written here. The experiments of `python train.py
hopfield` are tested in test_hopfield_experiment.py."""
import math

import numpy as np
import pytest
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


def attention_by_hand(R, Y, W_Q, W_K, W_V, W_O, heads, beta, norms=None):
    """Multi-head softmax(beta (R W_Q)(Y W_K)^T)(Y W_V) W_O, in plain torch from the nn.Linear weights;
    norms = (state, stored, value) functions applied first (the library's LayerNorms)."""
    if norms is not None:
        R, Y_k, Y_v = norms[0](R), norms[1](Y), norms[2](Y)
    else:
        Y_k = Y_v = Y
    q, k, v = R @ W_Q.weight.T + W_Q.bias, Y_k @ W_K.weight.T + W_K.bias, Y_v @ W_V.weight.T + W_V.bias
    d_head = q.shape[-1] // heads
    outs, maps = [], []
    for h in range(heads):
        cols = slice(h * d_head, (h + 1) * d_head)
        a = torch.softmax(beta * q[..., cols] @ k[..., cols].transpose(-1, -2), dim=-1)
        outs.append(a @ v[..., cols])
        maps.append(a)
    return torch.cat(outs, -1) @ W_O.weight.T + W_O.bias, torch.stack(maps, 1)


# ---------------------------------------------------------------------------------------------
# Section 2: energy, update, retrieval
# ---------------------------------------------------------------------------------------------

def test_update_is_X_softmax_of_beta_XT_xi_written_out_in_numpy():
    xi, X, beta = torch.randn(5, 8, dtype=torch.float64), torch.randn(11, 8, dtype=torch.float64), 0.7
    x, s = X.numpy(), xi.numpy()
    by_hand = []
    for state in s:
        w = np.exp(beta * x @ state)
        by_hand.append((w / w.sum()) @ x)          # sum_i p_i x_i
    assert np.allclose(hf.update(xi, X, beta).numpy(), np.array(by_hand), atol=1e-12)
    attention = F.scaled_dot_product_attention(xi[None], X[None], X[None], scale=beta)[0]
    assert torch.allclose(hf.update(xi, X, beta), attention, atol=1e-10)   # one step = attention


def test_lse_is_inverse_beta_times_log_sum_exp_of_beta_z():
    z, beta = np.array([[0.3, -1.2, 2.0, 0.5]]), 2.5
    by_hand = np.log(np.exp(beta * z).sum(-1)) / beta
    assert np.allclose(hf.lse(beta, torch.tensor(z)).numpy(), by_hand, atol=1e-12)


def test_energy_is_minus_lse_plus_half_norm_plus_log_N_over_beta_plus_half_M_squared():
    X, xi, beta = torch.randn(20, 6, dtype=torch.float64) * 1.5, torch.randn(7, 6, dtype=torch.float64), 2.0
    x = X.numpy()
    M = max(np.linalg.norm(row) for row in x)                     # the largest pattern norm
    for b, state in enumerate(xi.numpy()):
        by_hand = (-np.log(np.exp(beta * x @ state).sum()) / beta + 0.5 * state @ state
                   + np.log(20) / beta + 0.5 * M ** 2)
        assert abs(hf.energy(xi, X, beta)[b].item() - by_hand) < 1e-10


def test_energy_never_rises_along_updates_and_stays_nonnegative():
    X, xi, beta = torch.randn(20, 6, dtype=torch.float64), torch.randn(7, 6, dtype=torch.float64) * 3, 2.0
    energies = [hf.energy(xi, X, beta)]
    for _ in range(30):
        xi = hf.update(xi, X, beta)
        energies.append(hf.energy(xi, X, beta))
    energies = torch.stack(energies)
    assert (energies[1:] <= energies[:-1] + 1e-9).all()
    assert (energies[-1] < energies[0] - 1e-3).all()              # it does descend
    assert (energies >= -1e-9).all()                              # the constants make E >= 0 (section 2)


def test_iterated_update_converges_to_a_fixed_point():
    X, xi, beta = torch.randn(20, 6, dtype=torch.float64), torch.randn(7, 6, dtype=torch.float64), 2.0
    fixed, steps = hf.retrieve(xi, X, beta, max_steps=5000, tol=1e-9)
    assert (steps < 5000).all() and torch.allclose(hf.update(fixed, X, beta), fixed, atol=1e-8)


def test_retrieve_stops_once_the_max_norm_move_is_below_tol_and_counts_moving_updates():
    X = torch.randn(3, 50, dtype=torch.float64)
    xi, beta, tol = torch.randn(4, 50, dtype=torch.float64), 0.05, 1e-3
    state, by_hand = xi.clone(), []
    for row in state.numpy():                          # the rule in plain numpy, one query at a time
        x, moved = X.numpy(), 0
        for _ in range(100):
            w = np.exp(beta * x @ row)
            new = (w / w.sum()) @ x
            if np.abs(new - row).max() < tol:
                break
            moved, row = moved + 1, new
        by_hand.append(moved)
    _, steps = hf.retrieve(xi, X, beta, tol=tol)
    assert steps.tolist() == by_hand and max(by_hand) > 1
    exact = random_signs(5, 32, seed=1)
    _, steps = hf.retrieve(exact[:2], exact, beta=10.0)
    assert steps.tolist() == [0, 0]                    # a stored pattern is already a fixed point


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


def test_middle_beta_averages_a_cluster_of_similar_patterns_and_large_beta_picks_one():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(2, 16, generator=g) * 3
    X = torch.cat([c + 0.1 * torch.randn(4, 16, generator=g) for c in centres])     # 2 clusters of 4
    query = X[:1] + 0.1 * torch.randn(1, 16, generator=g)
    fixed = hf.retrieve(query, X, beta=0.5, max_steps=500)[0][0]
    to_cluster_mean = (fixed - X[:4].mean(0)).norm()
    assert to_cluster_mean < 0.25 * (fixed - X).norm(dim=-1).min()   # a metastable average, no one pattern
    assert (fixed - X.mean(0)).norm() > 10 * to_cluster_mean         # nor the global average
    fixed = hf.retrieve(query, X, beta=50.0, max_steps=500)[0][0]
    assert (fixed - X[0]).norm() < 0.01                              # large beta: the pattern itself


# ---------------------------------------------------------------------------------------------
# Background: the classical and dense binary networks
# ---------------------------------------------------------------------------------------------

def test_classical_weights_are_hebbian_with_a_zero_diagonal():
    X = random_signs(5, 7)
    x = X.numpy()
    W = np.zeros((7, 7))
    for pattern in x:
        for i in range(7):
            for j in range(7):
                if i != j:
                    W[i, j] += pattern[i] * pattern[j]
    assert np.array_equal(hf.classical_weights(X).numpy(), W)


def async_sign_sweeps(W, state, sweeps=10):
    """Hopfield 1982 by hand: bit l <- sign(sum_j W_lj xi_j), +1 on a tie, l = 0..d-1 in turn."""
    state = state.copy()
    for _ in range(sweeps):
        before = state.copy()
        for l in range(len(state)):
            state[l] = 1.0 if W[l] @ state >= 0 else -1.0
        if np.array_equal(before, state):
            break
    return state


def test_classical_retrieve_is_asynchronous_sign_updates_in_bit_order():
    X = random_signs(12, 40, seed=2)                   # 0.3 d: many bits flip, ties happen
    queries = torch.cat([masked(X[:6]), random_signs(6, 40, seed=3)])
    W = hf.classical_weights(X)
    by_hand = [async_sign_sweeps(W.numpy(), q) for q in queries.numpy()]
    assert np.array_equal(hf.classical_retrieve(queries, W).numpy(), np.array(by_hand))
    tie = hf.classical_retrieve(torch.zeros(1, 3), torch.zeros(3, 3), sweeps=1)
    assert tie.tolist() == [[1.0, 1.0, 1.0]]           # a zero field gives +1


def test_classical_energy_descends_sweep_by_sweep():
    X = random_signs(12, 40, seed=4)
    W, state = hf.classical_weights(X), random_signs(8, 40, seed=5)
    energy = [(-0.5 * (s @ W) * s).sum(-1) for s in (hf.classical_retrieve(state, W, sweeps=k)
                                                     for k in range(5))]
    assert all((later <= earlier).all() for earlier, later in zip(energy, energy[1:]))
    assert (energy[-1] < energy[0]).any()


def test_dense_retrieve_takes_for_each_bit_the_sign_of_lower_exp_energy():
    X, d = random_signs(30, 12, seed=6), 12                    # 2.5 d patterns: far over 0.14 d
    x = X.double().numpy()
    energy = lambda s: -np.exp(x @ s).sum()                     # E = -sum_i exp(x_i^T xi)
    queries = torch.cat([masked(X[:5]), random_signs(5, d, seed=7)])
    by_hand = []
    for state in queries.double().numpy():
        for _ in range(10):
            before = state.copy()
            for l in range(d):
                plus, minus = state.copy(), state.copy()
                plus[l], minus[l] = 1.0, -1.0
                state[l] = 1.0 if energy(plus) <= energy(minus) else -1.0
            if np.array_equal(before, state):
                break
        by_hand.append(state)
    assert np.array_equal(hf.dense_retrieve(queries, X).numpy(), np.array(by_hand))
    # a tie (both signs give the same energy) gives +1, as sign(0) does in the classical network
    tie = hf.dense_retrieve(torch.zeros(1, 2), torch.tensor([[1.0, 1.0], [-1.0, 1.0]]), sweeps=1)
    assert tie.tolist() == [[1.0, 1.0]]


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


# ---------------------------------------------------------------------------------------------
# Section 3: the layers, with the library's defaults
# ---------------------------------------------------------------------------------------------

def test_config_defaults_are_the_documented_ones():
    c = hf.HopfieldConfig()
    assert (c.d_model, c.n_heads, c.d_head, c.beta, c.update_steps, c.n_patterns, c.normalize,
            c.d_instance, c.pooling) == (32, 1, None, None, 1, 1, True, 16, "hopfield")


def test_default_beta_is_one_over_sqrt_of_the_head_width():
    assert hf.Hopfield(hf.HopfieldConfig(d_model=32, n_heads=4)).beta == 1 / math.sqrt(8)
    assert hf.Hopfield(hf.HopfieldConfig(d_model=32, n_heads=2, d_head=5)).beta == 1 / math.sqrt(5)
    assert hf.Hopfield(hf.HopfieldConfig(d_model=32, beta=0.3)).beta == 0.3


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
    assert (association[..., -2:] == 0).all()


def test_layernorms_on_state_stored_and_value_inputs_each_with_its_own_affine():
    layer = hf.Hopfield(hf.HopfieldConfig(d_model=8, n_heads=2))
    with torch.no_grad():                     # distinct affine parameters, so a swap would show
        for norm in (layer.norm_state, layer.norm_stored, layer.norm_value):
            norm.weight.normal_()
            norm.bias.normal_()
    R, Y = torch.randn(2, 3, 8) * 4 + 1, torch.randn(2, 7, 8) * 3 - 2
    ln = lambda norm: (lambda t: F.layer_norm(t, (8,), norm.weight, norm.bias, 1e-5))
    expected, weights = attention_by_hand(R, Y, layer.W_Q, layer.W_K, layer.W_V, layer.W_O, 2,
                                          1 / math.sqrt(4), (ln(layer.norm_state), ln(layer.norm_stored),
                                                             ln(layer.norm_value)))
    Z, association = layer(R, Y)
    assert torch.allclose(Z, expected, atol=1e-5) and torch.allclose(association, weights, atol=1e-6)
    plain = hf.Hopfield(hf.HopfieldConfig(d_model=8, normalize=False))
    assert not any(isinstance(m, torch.nn.LayerNorm) for m in plain.modules())


def test_extra_update_steps_iterate_the_update_in_the_key_space():
    layer = hf.Hopfield(hf.HopfieldConfig(d_model=8, update_steps=3, normalize=False))
    R, Y = torch.randn(1, 1, 8), torch.randn(1, 6, 8)
    Z, association = layer(R, Y)
    state, stored = R[0] @ layer.W_Q.weight.T + layer.W_Q.bias, Y[0] @ layer.W_K.weight.T + layer.W_K.bias
    for _ in range(2):                                  # two updates xi <- K^T softmax(beta K xi)
        state = torch.softmax(layer.beta * state @ stored.T, dim=-1) @ stored
    expected = torch.softmax(layer.beta * state @ stored.T, dim=-1)
    assert torch.allclose(association[0, 0], expected, atol=1e-6)
    values = Y[0] @ layer.W_V.weight.T + layer.W_V.bias        # the last association reads the values
    assert torch.allclose(Z[0], (expected @ values) @ layer.W_O.weight.T + layer.W_O.bias, atol=1e-5)


def test_layers_have_no_dropout_train_and_eval_agree():
    pool = hf.HopfieldPooling(hf.HopfieldConfig(d_model=8, n_heads=2, n_patterns=2))
    Y = torch.randn(3, 10, 8)
    pool.train()
    first = pool(Y)[0]
    pool.eval()
    assert torch.equal(first, pool(Y)[0])


def test_pooling_queries_are_learned_state_patterns_initialised_normal_002():
    pool = hf.HopfieldPooling(hf.HopfieldConfig(d_model=512, n_patterns=64))
    q = pool.queries.detach()
    assert q.shape == (64, 512) and pool.queries.requires_grad
    n = q.numel()                                       # 5 sigma of the sample mean and std
    assert abs(q.mean()) < 5 * 0.02 / math.sqrt(n) and abs(q.std() - 0.02) < 5 * 0.02 / math.sqrt(2 * n)


def test_pooling_output_is_each_learned_query_retrieving_from_the_set_flattened():
    config = hf.HopfieldConfig(d_model=12, n_heads=2, n_patterns=3, normalize=False)
    pool = hf.HopfieldPooling(config)
    Y = torch.randn(4, 30, 12)
    pooled, association = pool(Y)
    h = pool.hopfield
    expected, weights = attention_by_hand(pool.queries.expand(4, -1, -1), Y, h.W_Q, h.W_K, h.W_V, h.W_O, 2,
                                          1 / math.sqrt(6))
    assert pooled.shape == (4, 3 * 12) and association.shape == (4, 2, 3, 30)
    assert torch.allclose(pooled, expected.reshape(4, 36), atol=1e-5)
    assert torch.allclose(association, weights, atol=1e-6)


def test_lookup_layer_is_the_input_retrieving_from_learned_stored_patterns():
    config = hf.HopfieldConfig(d_model=12, n_heads=2, normalize=False)
    table = hf.HopfieldLayer(config, n_stored=7, d_out=5)
    s = table.stored.detach()
    assert s.shape == (7, 12) and table.stored.requires_grad and 0.01 < s.std() < 0.03
    R = torch.randn(4, 10, 12)
    looked_up, association = table(R)
    h = table.hopfield
    expected, weights = attention_by_hand(R, table.stored.expand(4, -1, -1), h.W_Q, h.W_K, h.W_V, h.W_O, 2,
                                          1 / math.sqrt(6))
    assert looked_up.shape == (4, 10, 5) and association.shape == (4, 2, 10, 7)
    assert torch.allclose(looked_up, expected, atol=1e-5) and torch.allclose(association, weights, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# The MIL model and its size-matched baselines
# ---------------------------------------------------------------------------------------------

def test_mil_embeds_each_instance_with_a_two_layer_relu_mlp_and_returns_the_mean_association():
    model = hf.MILClassifier(hf.HopfieldConfig(d_model=8, n_heads=2, n_patterns=3, d_instance=5))
    bags = torch.randn(2, 11, 5)
    first, second = [m for m in model.embed if isinstance(m, torch.nn.Linear)]
    h = torch.relu(torch.relu(bags @ first.weight.T + first.bias) @ second.weight.T + second.bias)
    pooled, association = model.pool(h)
    logits, on_instances = model(bags)
    assert torch.allclose(logits, model.head(pooled).squeeze(-1), atol=1e-6)
    assert on_instances.shape == (2, 11)                             # averaged over heads and queries
    assert torch.allclose(on_instances, association.mean(dim=(1, 2)), atol=1e-7)


@pytest.mark.parametrize("pooling", ["mean", "max"])
def test_baselines_pool_the_per_instance_mlp_by_mean_or_max(pooling):
    model = hf.MILClassifier(hf.HopfieldConfig(d_model=8, n_patterns=2, d_instance=5, pooling=pooling))
    bags = torch.randn(3, 9, 5)
    h = model.per_instance(model.embed(bags))                       # [3, 9, 16]
    pooled = h.mean(1) if pooling == "mean" else h.max(1).values
    logits, association = model(bags)
    assert torch.allclose(logits, model.head(pooled).squeeze(-1), atol=1e-6) and association is None


def count(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("d_model,heads,d_head,queries,normalize", [
    (32, 1, None, 1, True), (32, 4, None, 1, True), (32, 2, None, 4, True), (16, 1, None, 8, True),
    (64, 8, None, 2, False), (48, 3, 5, 3, True), (8, 1, None, 1, True), (8, 8, None, 64, True),
    (128, 4, 16, 16, True), (24, 2, None, 64, True), (256, 64, None, 1, True)])
def test_baseline_mlp_has_the_parameter_count_of_hopfield_pooling(d_model, heads, d_head, queries, normalize):
    pooling_part, whole = {}, {}
    for pooling in ("hopfield", "mean", "max"):
        config = hf.HopfieldConfig(d_model=d_model, n_heads=heads, d_head=d_head, n_patterns=queries,
                                   normalize=normalize, pooling=pooling)
        model = hf.MILClassifier(config)
        pooling_part[pooling] = count(model.pool if pooling == "hopfield" else model.per_instance)
        whole[pooling] = count(model)
    hidden_unit = d_model + 1 + d_model * queries       # what one more hidden unit of the MLP costs
    assert abs(pooling_part["mean"] - pooling_part["hopfield"]) <= hidden_unit / 2    # the best width
    assert abs(whole["mean"] - whole["hopfield"]) <= 0.05 * whole["hopfield"]
    assert whole["mean"] == whole["max"]


# ---------------------------------------------------------------------------------------------
# Precision: float32, float64, bfloat16 weights and bf16 autocast
# ---------------------------------------------------------------------------------------------

def mil_reference(seed=0):
    torch.manual_seed(seed)
    model = hf.MILClassifier(hf.HopfieldConfig(d_model=16, n_heads=2, n_patterns=2, update_steps=2,
                                               d_instance=6))
    return model, torch.randn(3, 40, 6)


@pytest.mark.parametrize("dtype,tolerance", [(torch.float32, 1e-5), (torch.bfloat16, 0.1)])
def test_mil_model_with_weights_in_a_dtype_matches_float64(dtype, tolerance):
    model, bags = mil_reference()
    with torch.no_grad():
        reference, ref_association = model.double()(bags.double())
        logits, association = model.to(dtype)(bags.to(dtype))
    assert logits.dtype == dtype and association.dtype == (torch.float32 if dtype != torch.float64 else dtype)
    assert torch.isfinite(logits.float()).all() and torch.isfinite(association).all()
    assert torch.allclose(logits.double(), reference, atol=tolerance, rtol=tolerance)
    assert torch.allclose(association.double(), ref_association, atol=tolerance)


def test_mil_model_in_float64_keeps_float64_throughout():
    model, bags = mil_reference()
    logits, association = model.double()(bags.double())
    assert logits.dtype == association.dtype == torch.float64


def test_mil_model_under_bf16_autocast_has_float32_association_and_gradients():
    model, bags = mil_reference()
    with torch.no_grad():
        reference, _ = model.double()(bags.double())
    model.float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, association = model(bags)
        loss = F.binary_cross_entropy_with_logits(logits, torch.ones(3))
    loss.backward()
    assert association.dtype == torch.float32 and logits.dtype == torch.bfloat16
    assert torch.allclose(association.sum(-1), torch.ones(3), atol=1e-5)   # a bf16 softmax misses by ~1e-3
    assert torch.allclose(logits.double(), reference, atol=0.1, rtol=0.1)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_hopfield_layer_with_bf16_weights_outside_autocast_runs_and_keeps_float32_association():
    torch.manual_seed(0)
    layer = hf.Hopfield(hf.HopfieldConfig(d_model=16, n_heads=2, update_steps=2))
    R, Y = torch.randn(3, 5, 16), torch.randn(3, 40, 16)
    with torch.no_grad():
        reference, _ = layer.double()(R.double(), Y.double())
        Z, association = layer.bfloat16()(R.bfloat16(), Y.bfloat16())
    assert Z.dtype == torch.bfloat16 and association.dtype == torch.float32
    assert torch.allclose(Z.double(), reference, atol=0.1, rtol=0.1)


def test_energy_and_lse_are_float32_under_bf16_autocast_and_for_bf16_inputs():
    X = random_signs(64, 32)                  # +-1 and 0 are exact in bf16: only the arithmetic differs
    xi = masked(X[:8])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        e = hf.energy(xi.bfloat16(), X.bfloat16(), 1.0)
        z = hf.lse(1.0, (xi @ X.T))
    assert e.dtype == z.dtype == torch.float32
    assert torch.allclose(e, hf.energy(xi, X, 1.0), rtol=1e-6, atol=1e-5)
    assert hf.energy(xi.bfloat16(), X.bfloat16(), 1.0).dtype == torch.float32
    assert hf.energy(xi.double(), X.double(), 1.0).dtype == torch.float64
    in_bf16 = (-torch.logsumexp(xi.bfloat16() @ X.bfloat16().T, -1) + 0.5 * (xi.bfloat16() ** 2).sum(-1)
               + np.log(64) + 0.5 * 32)         # the same formula in bf16 (M^2 = d for sign patterns)
    assert (in_bf16.float() - e).abs().max() > 1e-3      # so the float32 island matters


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_update_and_retrieve_work_in_each_dtype(dtype):
    X = random_signs(200, 64)
    query = X[:10] + 0.5 * torch.randn(10, 64)
    new = hf.update(query.to(dtype), X.to(dtype), 1.0)
    fixed, _ = hf.retrieve(query.to(dtype), X.to(dtype), 1.0, tol=1e-2)
    assert new.dtype == fixed.dtype == dtype
    assert torch.equal(torch.sign(new.float()), X[:10]) and torch.equal(torch.sign(fixed.float()), X[:10])
