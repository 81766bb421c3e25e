"""End-To-End Memory Networks: the equations against hand-written references, the tying, the
temporal order, RN, LS and padding."""
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
    sentences of 1..J words; and one query per story."""
    g = torch.Generator().manual_seed(seed)
    story = torch.zeros(len(sizes), M, J, dtype=torch.long)
    query = torch.zeros(len(sizes), J, dtype=torch.long)
    for b, n in enumerate(sizes):
        for i in range(n):
            length = int(torch.randint(1, J + 1, (1,), generator=g))
            story[b, i, :length] = torch.randint(1, V, (length,), generator=g)
        query[b, :2] = torch.randint(1, V, (2,), generator=g)
    return story, query


def reference_forward(model, story, query, softmax=True):
    """Sections 2 and 4.1 written out with loops, one story at a time, in eval mode."""
    cfg, out, attention = model.config, [], []
    null = cfg.null

    def sentence_vector(weight, words):
        words = [w for w in words.tolist() if w != null]
        J = len(words)
        total = torch.zeros(cfg.d)
        for j, w in enumerate(words, start=1):
            l = torch.tensor([(1 - j / J) - (k / cfg.d) * (1 - 2 * j / J) for k in range(1, cfg.d + 1)])
            total = total + (l if cfg.encoding == "pe" else 1) * weight[w]
        return total

    for b in range(story.shape[0]):
        n = int((story[b] != null).any(-1).sum())
        u = sentence_vector(model.B, query[b])
        hops = []
        for k in range(1, cfg.hops + 1):
            # memory i (oldest first) is n-1-i sentences before the most recent one
            m = [sentence_vector(model.A(k), story[b, i]) + model.T_A(k)[n - 1 - i] for i in range(n)]
            c = [sentence_vector(model.C(k), story[b, i]) + model.T_C(k)[n - 1 - i] for i in range(n)]
            scores = torch.stack([u @ m_i for m_i in m])
            p = torch.softmax(scores, 0) if softmax else scores
            o = sum(p_i * c_i for p_i, c_i in zip(p, c))
            u = (u if model.H is None else model.H(u)) + o
            hops.append(torch.cat([p, torch.zeros(story.shape[1] - n)]))
        W = model.W.clone()
        W[null] = 0
        out.append(W @ u)
        attention.append(torch.stack(hops))
    return torch.stack(out), torch.stack(attention)


# --- the model --------------------------------------------------------------------------------

def test_position_encoding_is_the_formula():
    J, d = 5, 7
    l = memn2n.position_encoding(J, d)
    assert l.shape == (J, d)
    for j in range(1, J + 1):
        for k in range(1, d + 1):
            assert l[j - 1, k - 1].item() == pytest.approx((1 - j / J) - (k / d) * (1 - 2 * j / J))


@pytest.mark.parametrize("tying,encoding,softmax", [("adjacent", "pe", True), ("adjacent", "bow", True),
                                                     ("layerwise", "pe", True), ("adjacent", "pe", False),
                                                     ("layerwise", "bow", False)])
def test_forward_matches_the_equations_and_ls_removes_only_the_memory_softmax(tying, encoding, softmax):
    model = make_model(tying, encoding)
    model.linear_start = not softmax
    story, query = random_batch()
    with torch.no_grad():
        logits = model(story, query)
        expected, attention = reference_forward(model, story, query, softmax)
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(model.attention, attention, rtol=1e-4, atol=1e-5)


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
    model = make_model("layerwise", hops=3)
    assert model.A(1) is model.A(3) and model.C(1) is model.C(2)
    assert model.T_A(1) is model.T_A(3)
    assert model.A(1) is not model.C(1) and model.B is not model.A(1) and model.W is not model.C(3)
    assert model.H.weight.shape == (6, 6)


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


def test_random_noise_inserts_blank_slots_only_in_training_mode():
    model = make_model(random_noise=0.5, memory_size=50)  # room for every shifted row
    n = torch.tensor([30, 12, 1, 20])
    present = torch.arange(30).unsqueeze(0) < n.unsqueeze(1)
    recency = (n.unsqueeze(1) - 1 - torch.arange(30)).clamp(min=0)
    assert torch.equal(model.time_index(present)[present], recency[present])  # eval mode
    model.train()
    shifted = 0
    for _ in range(20):
        rows = model.time_index(present)
        for b in range(4):
            r = rows[b, : n[b]]
            assert (r[:-1] > r[1:]).all(), "time order kept, rows distinct"
            assert r[-1] >= 0 and r[0] <= n[b] - 1 + math.ceil(0.5 * n[b])
        shifted += int((rows[present] != recency[present]).any())
    assert shifted > 10
    model.config.random_noise = 0.0
    assert torch.equal(model.time_index(present)[present], recency[present])


def test_null_word_stays_zero():
    model = make_model().train()
    story, query = random_batch()
    model(story, query).sum().backward()
    for weight in model.embeddings:
        assert weight.grad[0].abs().max() == 0
    with torch.no_grad():
        assert (model.eval()(story, query)[:, 0] == 0).all()
