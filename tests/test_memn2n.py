"""End-To-End Memory Networks: the equations against hand-written references, the tying, the
temporal order, RN, LS and padding, and the bAbI-style generator and parser."""
import math

import numpy as np
import pytest
import torch

import memn2n
import tasks
from conftest import check_result, result_lines


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


# --- the bAbI-style data ------------------------------------------------------------------------

def replay(story):
    """Read a story's statements back into a world state and check each question against it."""
    place, holder, lying, carried = {}, {}, {}, {}
    for i, line in enumerate(story, 1):
        words = line.text.rstrip(".?").split()
        if line.answer is None:
            actor = words[0]
            if words[-2:-1] == ["the"] and words[-3] == "to":  # "<actor> <verb> to the <location>"
                for obj, (who, got) in holder.items():
                    if who == actor:
                        carried[obj] = (place[actor][0], words[-1], {got, place[actor][1], i})
                place[actor] = (words[-1], i)
            else:
                obj = words[words.index("the") + 1]
                assert obj in tasks.BABI_OBJECTS and actor in place, line.text
                if any(line.text.startswith(f"{actor} {v} ") for v in tasks.BABI_GET):
                    assert obj not in holder and lying.get(obj, place[actor])[0] == place[actor][0]
                    holder[obj] = (actor, i)
                    lying.pop(obj, None)
                else:
                    assert holder.pop(obj)[0] == actor
                    lying[obj] = (place[actor][0], i, place[actor][1])
            continue
        assert all(story[s - 1].answer is None for s in line.support)
        if words[:2] == ["Where", "is"] and words[2] != "the":  # task 1
            assert (line.answer, set(line.support)) == (place[words[2]][0], {place[words[2]][1]})
        elif words[:2] == ["Where", "is"]:  # task 2
            obj = words[3]
            if obj in holder:
                actor, got = holder[obj]
                expected = (place[actor][0], {got, place[actor][1]})
            else:
                expected = (lying[obj][0], {lying[obj][1], lying[obj][2]})
            assert (line.answer, set(line.support)) == expected
        else:  # task 3: "Where was the <object> before the <location>"
            frm, to, support = carried[words[3]]
            assert (line.answer, to, set(line.support)) == (frm, words[-1], support)


@pytest.mark.parametrize("task", [1, 2, 3])
def test_generated_stories_are_consistent_and_round_trip(task):
    stories = tasks.babi_stories(task, 60, np.random.default_rng(task))
    assert sum(line.answer is not None for s in stories for line in s) == 60
    for story in stories:
        replay(story)
    text = tasks.write_babi(stories)
    assert tasks.parse_babi(text) == stories and tasks.write_babi(tasks.parse_babi(text)) == text
    for example in tasks.babi_examples(stories):  # the supporting facts fit in the 50-memory window
        assert min(example.support) >= len(example.memory) - tasks.BABI_MEMORY
        assert example.answer in tasks.babi_words(" ".join(tasks.BABI_LOCATIONS))


def test_a_handwritten_file_parses_into_examples_and_tensors():
    text = ("1 Mary moved to the bathroom.\n2 John went to the hallway.\n"
            "3 Where is Mary? \tbathroom\t1\n4 Daniel went back to the hallway.\n"
            "5 Where is Daniel? \thallway\t4\n1 Sandra journeyed to the garden.\n"
            "2 Where is Sandra? \tgarden\t1\n")
    examples = tasks.babi_examples(tasks.parse_babi(text))
    assert [(len(e.memory), e.question, e.answer, e.support) for e in examples] == [
        (2, ["where", "is", "mary"], "bathroom", [0]), (3, ["where", "is", "daniel"], "hallway", [2]),
        (1, ["where", "is", "sandra"], "garden", [0])]
    vocab = tasks.babi_vocab(examples)
    story, query, answer = tasks.babi_tensors(examples, vocab, memory_size=2)
    assert story.shape == (3, 2, 6) and query.shape == (3, 6)
    assert [vocab[w] for w in story[1, 1] if w] == "daniel went back to the hallway".split()  # latest 2 kept
    assert (story[2, 1] == 0).all() and vocab[answer[0]] == "bathroom"
    for bad in ["1 Mary moved.\n3 John moved.\n", "x Mary\n", "1 Mary moved.\n2 Where? \tbed\t2\n"]:
        with pytest.raises(ValueError):
            tasks.parse_babi(bad)


# --- the experiment ---------------------------------------------------------------------------

def progress_losses(stdout):
    return [float(line.split("| loss ")[1].split()[0]) for line in stdout.splitlines() if "| loss " in line]


def test_a_short_run_on_task_1_lowers_the_loss_and_draws_the_hops(run_train, tmp_path):
    code, out, err = run_train("memn2n", "--task", 1, "--hops", 2, "--train-size", 400, "--test-size", 100,
                               "--epochs", 12, "--target-error", 0, "--out", tmp_path, "--device", "cpu")
    assert code == 0, err
    [result] = result_lines(out)
    check_result(result, "memn2n")
    assert result["task"] == "babi-task1" and result["metrics"]["training_questions"] == 360
    losses = progress_losses(out)
    assert len(losses) == 12 and losses[-1] < 0.8 * losses[0]
    assert "support | hop 1 | hop 2 | sentence" in out and "linear start over" in out
    assert (tmp_path / "hops.png").exists() and (tmp_path / "result.json").exists()


def test_data_dir_trains_on_real_format_files_and_bad_input_is_one_line(run_train, tmp_path):
    for split, seed, n in (("train", 1, 50), ("test", 2, 20)):
        stories = tasks.babi_stories(2, n, np.random.default_rng(seed))
        (tmp_path / f"qa2_two-supporting-facts_{split}.txt").write_text(tasks.write_babi(stories))
    code, out, err = run_train("memn2n", "--data", tmp_path, "--epochs", 1, "--device", "cpu")
    assert code == 0, err
    assert result_lines(out)[0]["metrics"]["training_questions"] == 45
    (tmp_path / "qa2_two-supporting-facts_test.txt").write_text("1 Mary moved.\n3 John moved.\n")
    for argv in (["--data", tmp_path], ["--data", tmp_path / "missing"], ["--data", tmp_path, "--task", 1]):
        code, out, err = run_train("memn2n", *argv, "--epochs", 1)
        assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_compare_prints_a_result_per_task_and_hops_then_the_table(run_train):
    code, out, err = run_train("memn2n", "--compare", "--train-size", 30, "--test-size", 20, "--epochs", 1,
                               "--device", "cpu")
    assert code == 0, err
    results = result_lines(out)
    assert [(r["task"], r["metrics"]["hops"]) for r in results] == [
        (f"babi-task{t}", k) for t in (1, 2, 3) for k in (1, 2, 3)]
    table = out.strip().splitlines()[-5:]
    assert table[0].startswith("| bAbI task") and "3 hops paper (1k)" in table[0]
    assert "| 62.0" in table[3] and table[4].startswith("| 3: three-supporting-facts")
