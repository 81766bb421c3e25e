"""End-To-End Memory Networks: the equations against a reference written out with loops, the tying,
the temporal order, RN, LS, padding and empty memories, the paper's defaults, and every dtype."""
import math

import pytest
import torch

import memn2n


def make_model(tying="adjacent", encoding="pe", hops=3, V=12, d=6, memory_size=8, random_noise=0.0):
    config = memn2n.MemN2NConfig(V, d=d, hops=hops, memory_size=memory_size, tying=tying,
                                 encoding=encoding, random_noise=random_noise)
    return memn2n.MemN2N(config).eval()


def random_batch(V=12, sizes=(3, 5, 1), M=6, J=4, seed=0):
    """Stories of the given numbers of sentences (oldest first, null rows after), words 1..V-1,
    sentences of 1..J words, some with a null word inside (an unknown word); one query per story."""
    g = torch.Generator().manual_seed(seed)
    story = torch.zeros(len(sizes), M, J, dtype=torch.long)
    query = torch.zeros(len(sizes), J, dtype=torch.long)
    for b, n in enumerate(sizes):
        for i in range(n):
            length = int(torch.randint(1, J + 1, (1,), generator=g))
            story[b, i, :length] = torch.randint(1, V, (length,), generator=g)
            if length >= 3 and i % 2 == 0:
                story[b, i, 1] = 0  # a null word inside the sentence
        query[b, :3] = torch.randint(1, V, (3,), generator=g)
        query[b, 1] = 0
    return story, query


def reference_forward(model, story, query, softmax=True):
    """Sections 2 and 4.1 written out with loops, one story at a time, in eval mode, on the raw
    parameter lists (not the model's named accessors): adjacent tying E^0..E^K with B = E^0,
    A^k = E^{k-1}, C^k = E^k, W = E^K; layer-wise A = E^0, C = E^1 in every hop, B, W and H apart."""
    cfg, out, attention = model.config, [], []
    null, K = cfg.null, cfg.hops
    E, T = list(model.embeddings), list(model.times)
    if cfg.tying == "adjacent":
        A, C, TA, TC = E[:K], E[1:], T[:K], T[1:]
        B, W = E[0], E[K]
    else:
        A, C, TA, TC = [E[0]] * K, [E[1]] * K, [T[0]] * K, [T[1]] * K
        B, W = model.query_embedding, model.answer_weight

    def sentence_vector(weight, words):
        words = words.tolist()
        J = max((j for j, w in enumerate(words, start=1) if w != null), default=0)  # its true length
        total = torch.zeros(cfg.d)
        for j, w in enumerate(words[:J], start=1):
            if w == null:
                continue  # a null word embeds as zero but keeps its place j
            l = torch.tensor([(1 - j / J) - (k / cfg.d) * (1 - 2 * j / J) for k in range(1, cfg.d + 1)])
            total = total + (l if cfg.encoding == "pe" else 1) * weight[w]
        return total

    for b in range(story.shape[0]):
        n = int((story[b] != null).any(-1).sum())
        u = sentence_vector(B, query[b])
        hops = []
        for k in range(K):
            # memory i (oldest first) is n-1-i sentences before the most recent one: row n-1-i of T
            m = [sentence_vector(A[k], story[b, i]) + TA[k][n - 1 - i] for i in range(n)]
            c = [sentence_vector(C[k], story[b, i]) + TC[k][n - 1 - i] for i in range(n)]
            scores = torch.stack([u @ m_i for m_i in m])
            p = torch.softmax(scores, 0) if softmax else scores
            o = sum(p_i * c_i for p_i, c_i in zip(p, c))
            u = (u if cfg.tying == "adjacent" else model.H.weight @ u) + o
            hops.append(torch.cat([p, torch.zeros(story.shape[1] - n)]))
        W_ = W.clone()
        W_[null] = 0
        out.append(W_ @ u)
        attention.append(torch.stack(hops))
    return torch.stack(out), torch.stack(attention)


# --- the equations ---------------------------------------------------------------------------

def test_position_encoding_is_the_formula_with_each_sentences_own_length():
    J, d = 6, 7
    lengths = torch.tensor([6, 3, 1])
    l = memn2n.position_encoding(lengths, J, d)
    assert l.shape == (3, J, d)
    for row, n in enumerate(lengths.tolist()):
        for j in range(1, J + 1):
            for k in range(1, d + 1):
                expected = (1 - j / n) - (k / d) * (1 - 2 * j / n) if j <= n else 0.0
                assert l[row, j - 1, k - 1].item() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("tying,encoding,softmax,J", [
    ("adjacent", "pe", True, 4), ("adjacent", "bow", True, 4), ("layerwise", "pe", True, 4),
    ("adjacent", "pe", False, 4), ("layerwise", "bow", False, 4),
    ("adjacent", "pe", True, 20)])  # J = 20: sentences too long to pack into one int64 key
def test_forward_matches_the_equations_and_ls_removes_only_the_memory_softmax(tying, encoding, softmax, J):
    model = make_model(tying, encoding)
    model.linear_start = not softmax
    story, query = random_batch(J=J)
    with torch.no_grad():
        logits = model(story, query)
        expected, attention = reference_forward(model, story, query, softmax)
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(model.attention, attention, rtol=1e-4, atol=1e-5)


def test_a_null_word_inside_a_sentence_keeps_the_next_words_position():
    """'a <nil> b': J = 3 and b is word 3 (the bug: J = 2 and b dropped)."""
    model = make_model(hops=1, d=4)
    model.linear_start = True
    a, b = 3, 5
    story = torch.tensor([[[a, 0, b, 0]]])
    with torch.no_grad():
        model(story, torch.tensor([[a, 0, 0, 0]]))
        score = model.attention[0, 0, 0]
        d, J = 4, 3
        l = lambda j: torch.tensor([(1 - j / J) - (k / d) * (1 - 2 * j / J) for k in range(1, d + 1)])
        m = l(1) * model.embeddings[0][a] + l(3) * model.embeddings[0][b] + model.times[0][0]
        u = model.embeddings[0][a] * torch.tensor([(1 - 1) - (k / d) * (1 - 2) for k in range(1, d + 1)])
    assert score.item() == pytest.approx((u @ m).item(), rel=1e-5)


def test_an_empty_memory_reads_nothing_so_the_answer_is_w_u():
    """A question with no sentence before it: p = 0 and o = 0 in every hop, no NaN (the bug: a softmax
    over nothing). Adjacent tying: logits = W u^1; layer-wise: W H^K u^1."""
    for tying in ("adjacent", "layerwise"):
        model = make_model(tying)
        story, query = random_batch(sizes=(0, 2))
        out = model(story, query)
        assert torch.isfinite(out).all() and (model.attention[0] == 0).all()
        with torch.no_grad():
            u = model.embed(model.B, query[:1], model.pe_weights(query[:1]))[0]
            for _ in range(3 if tying == "layerwise" else 0):
                u = model.H.weight @ u
            torch.testing.assert_close(out[0], (model.W * model.keep) @ u)
        out.sum().backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_adjacent_tying_shares_the_named_tensors():
    K, V, d, M = 3, 12, 6, 8
    model = make_model("adjacent", hops=K, V=V, d=d, memory_size=M)
    assert model.B is model.A(1)
    for k in range(1, K):
        assert model.A(k + 1) is model.C(k)
        assert model.T_A(k + 1) is model.T_C(k)
    assert model.W is model.C(K)
    assert len({id(model.A(k)) for k in range(1, K + 1)} | {id(model.C(K))}) == K + 1
    assert sum(p.numel() for p in model.parameters()) == (K + 1) * (V * d + M * d)


def test_layerwise_tying_shares_a_and_c_across_hops_and_adds_h():
    V, d, M = 12, 6, 8
    model = make_model("layerwise", hops=3, V=V, d=d, memory_size=M)
    assert model.A(1) is model.A(3) and model.C(1) is model.C(2)
    assert model.T_A(1) is model.T_A(3) and model.T_C(1) is model.T_C(3)
    assert model.A(1) is not model.C(1) and model.B is not model.A(1) and model.W is not model.C(3)
    assert model.H.weight.shape == (d, d) and model.H.bias is None
    assert sum(p.numel() for p in model.parameters()) == 4 * V * d + 2 * M * d + d * d


def test_every_hop_attention_sums_to_one_and_padding_gets_none():
    model = make_model()
    story, query = random_batch(sizes=(3, 5, 1))
    with torch.no_grad():
        logits = model(story, query)
    p = model.attention
    assert p.shape == (3, 3, 6)
    torch.testing.assert_close(p.sum(-1), torch.ones(3, 3))
    present = (story != 0).any(-1)
    assert (p[~present.unsqueeze(1).expand_as(p)] == 0).all()
    # more padding rows change nothing
    wider = torch.cat([story, torch.zeros(3, 2, story.shape[2], dtype=torch.long)], 1)
    with torch.no_grad():
        torch.testing.assert_close(model(wider, query), logits)


@pytest.mark.parametrize("J", [3, 20])  # 20 words: too long to pack into one int64 key
def test_distinct_sentences_rebuild_every_row_and_are_distinct(J):
    """Every sentence is embedded once per distinct row: rows == distinct[index], with no two equal
    distinct rows, over every sentence of 3 words from a vocabulary of 12 (plus long ones)."""
    model = make_model(V=12)
    words = torch.cartesian_prod(*[torch.arange(12)] * 3)  # [1728, 3]
    rows = torch.cat([words, words.flip(0)[:, :1].expand(-1, J - 3)], 1) if J > 3 else words
    distinct, which = model.distinct(rows)
    assert torch.equal(distinct[which], rows)
    assert len(distinct) == len({tuple(r) for r in rows.tolist()})


def test_more_memories_than_memory_size_are_refused():
    model = make_model(memory_size=4)
    story, query = random_batch(sizes=(5,), M=5)
    with pytest.raises(ValueError, match="memory_size"):
        model(story, query)


# --- time: temporal encoding and random noise ---------------------------------------------

def test_temporal_rows_count_back_from_the_most_recent_sentence():
    model = make_model()
    present = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.bool)
    rows = model.time_index(present)
    assert rows[0, :3].tolist() == [2, 1, 0] and rows[1].tolist() == [4, 3, 2, 1, 0] and rows[2, 0] == 0
    # an older sentence told first leaves the raw scores of the later ones unchanged (LS: no softmax)
    model.linear_start = True
    story, query = random_batch(sizes=(4,), M=6)
    older = torch.cat([story[:, -1:], story[:, :-1]], 1)  # the last row is padding: move it to the front
    older[:, 0, 0] = 5
    with torch.no_grad():
        model(story, query)
        scores = model.attention[0, 0, :4]
        model(older, query)
        assert torch.allclose(model.attention[0, 0, 1:5], scores)


def test_random_noise_draws_0_to_ceil_of_a_tenth_blank_slots_in_training_only():
    """The official code: nblank = randi([0, ceil(0.1 n)]), then n rows of a random permutation of
    n + nblank, sorted so that older sentences take later rows. For n = 25: 0..3 blanks, so the oldest
    row reaches 24 + 3 = 27 and never more, and the rows are unshifted (no blank) a quarter of the time."""
    model = make_model(random_noise=0.1, memory_size=50)
    n, draws = 25, 4000
    present = (torch.arange(30) < n).unsqueeze(0).expand(draws, 30)
    recency = torch.arange(n - 1, -1, -1)
    assert torch.equal(model.time_index(present)[:, :n], recency.expand(draws, n))  # eval mode: no noise
    model.train()
    rows = model.time_index(present)[:, :n]
    assert (rows[:, :-1] > rows[:, 1:]).all(), "time order kept, rows distinct"
    assert rows.min() == 0 and rows.max() == n - 1 + math.ceil(0.1 * n)
    unshifted = (rows == recency).all(1).float().mean().item()
    assert abs(unshifted - 1 / 4) < 5 * math.sqrt(3 / 16 / draws)
    model.config.random_noise = 0.0
    assert torch.equal(model.time_index(present)[:, :n], recency.expand(draws, n))


def test_time_rows_stop_at_the_last_row_of_the_memory():
    model = make_model(random_noise=0.5, memory_size=10).train()
    present = torch.ones(200, 10, dtype=torch.bool)
    rows = model.time_index(present)
    assert rows.max() == 9  # 10 sentences + up to 5 blanks, clamped to the 10 rows of T_A, T_C


# --- linear start, the null word, the paper's defaults -------------------------------------

def test_linear_start_is_in_the_state_dict_so_a_reloaded_model_scores_the_same():
    model = make_model()
    model.linear_start = True
    state = model.state_dict()
    assert state["linear_start_flag"].item() is True
    reloaded = make_model()
    reloaded.load_state_dict(state)
    story, query = random_batch()
    assert reloaded.linear_start
    with torch.no_grad():
        torch.testing.assert_close(reloaded(story, query), model(story, query))
    model.linear_start = False
    assert model.state_dict()["linear_start_flag"].item() is False and not model.linear_start


def test_null_word_stays_zero():
    model = make_model().train()
    story, query = random_batch()
    model(story, query).sum().backward()
    for weight in model.embeddings:
        assert weight.grad[0].abs().max() == 0
    with torch.no_grad():
        assert (model.eval()(story, query)[:, 0] == 0).all()


def test_the_defaults_are_the_papers():
    config = memn2n.MemN2NConfig(30)
    assert (config.d, config.hops, config.memory_size, config.tying, config.encoding, config.temporal,
            config.random_noise, config.init_std, config.null) == (
        20, 3, 50, "adjacent", "pe", True, 0.1, 0.1, 0)
    model = memn2n.MemN2N(config)
    assert not model.linear_start and model.times[0].shape == (50, 20)


@pytest.mark.parametrize("tying", ["adjacent", "layerwise"])
def test_weights_start_from_a_normal_of_std_0_1(tying):
    torch.manual_seed(0)
    model = memn2n.MemN2N(memn2n.MemN2NConfig(400, d=40, hops=3, tying=tying))
    for name, p in model.named_parameters():
        values = p.detach().flatten()
        n = values.numel()
        assert abs(values.mean().item()) < 5 * 0.1 / math.sqrt(n), name
        assert abs(values.std().item() - 0.1) < 5 * 0.1 / math.sqrt(2 * n), name
        assert values.abs().max() > 0.25, name  # a normal's tail (2.5 sigma), beyond a uniform's bound


# --- dtypes ----------------------------------------------------------------------------------

@pytest.mark.parametrize("tying", ["adjacent", "layerwise"])
def test_float32_bfloat16_and_autocast_agree_with_float64(tying):
    torch.manual_seed(0)
    reference = make_model(tying, d=16)
    story, query = random_batch()
    with torch.no_grad():
        expected = reference.double()(story, query)
        for dtype, tolerance in ((torch.float32, 1e-5), (torch.bfloat16, 0.05)):
            model = make_model(tying, d=16)
            model.load_state_dict(reference.state_dict())
            out = model.to(dtype)(story, query)
            assert out.dtype == dtype and torch.isfinite(out).all()
            atol = tolerance * expected.abs().max().item()
            torch.testing.assert_close(out.double(), expected, rtol=tolerance, atol=atol)
            assert model.attention.dtype in (torch.float32, torch.float64)  # the softmax's float32 island
        model = make_model(tying, d=16)
        model.load_state_dict(reference.state_dict())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model.float()(story, query)
        assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
        torch.testing.assert_close(out.double(), expected, rtol=0.05, atol=0.05 * expected.abs().max().item())
        assert not torch.allclose(out.double(), expected, rtol=1e-6, atol=1e-7)  # bf16 did run
