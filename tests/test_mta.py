"""Tests for mta.py (Multi-Token Attention) and its letter-block toy task."""
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import mta
import tasks
from conftest import check_result, result_lines


def small_config(**overrides):
    settings = dict(vocab_size=tasks.LetterBlocks.vocab_size, max_len=64, n_layers=2, d_model=16,
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


def slow_solver(src):
    """Find the answer by brute force over the blocks, independently of the generator."""
    text, query = src.split("#")
    holding_all = [block for block in text.split(".") if all(letter in block for letter in query)]
    assert len(holding_all) == 1, src
    return holding_all[0]


@pytest.mark.parametrize("n_blocks,query_letters", [(4, 2), (12, 3), (52, 2)])
def test_generator_answers_are_right(n_blocks, query_letters):
    task = tasks.LetterBlocks(n_blocks, query_letters)
    for src, tgt in task.examples(200, np.random.default_rng(0)):
        blocks = src.split("#")[0].split(".")
        assert len(blocks) == n_blocks and len(set(blocks)) == n_blocks
        assert all(len(b) == len(set(b)) == 5 for b in blocks)
        assert len(src.split("#")[1]) == query_letters and slow_solver(src) == tgt
    if n_blocks == 52:  # the paper's length: 52 blocks, '#', 2 query letters and the 5-letter answer
        assert len(src) + len(tgt) == 319


def test_batches_predict_the_target_from_the_position_before_it():
    examples = [("abcde.fghij#hf", "fghij"), ("abcde.fghij.klmno#ca", "abcde")]
    tokens, positions, targets = tasks.LetterBlocks.collate(examples)
    for row, (src, tgt) in enumerate(examples):
        full = tasks.LetterBlocks.encode(src + tgt)
        for n in range(len(tgt)):  # the token at a position is followed by the letter it must predict
            assert full[positions[row, n] + 1] == targets[row, n]
            assert tokens[row, positions[row, n]] == full[positions[row, n]]


def test_a_few_steps_on_one_batch_lower_the_loss():
    torch.manual_seed(0)
    model = mta.MTATransformer(small_config(d_model=32))
    tokens, positions, targets = tasks.LetterBlocks(3).batch(16, np.random.default_rng(0))
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


def test_cli_prints_a_valid_result_line(run_train, tmp_path):
    code, out, err = run_train("mta", "--steps", "6", "--eval-every", "3", "--blocks", "3",
                               "--test-size", "50", "--out", tmp_path)
    assert code == 0, err
    [result] = result_lines(out)
    check_result(result, "mta")
    assert 0 <= result["metrics"]["first_letter_error"] <= 1
    assert "attention before the key-query convolution" in out
    assert (tmp_path / "result.json").exists()


def test_cli_compare_prints_both_models_and_the_table(run_train):
    code, out, err = run_train("mta", "--compare", "--seeds", "2", "--steps", "3", "--eval-every", "3",
                               "--blocks", "2", "--test-size", "20", "--d-model", "16")
    assert code == 0, err
    results = result_lines(out)
    assert [r["variant"] for r in results] == ["mta", "standard"]
    assert all(r["metrics"]["seeds"] == [0, 1] for r in results)
    assert "| **standard** (ours)" in out and "| MTA (paper)" in out and "51.6" in out


def test_cli_baseline_trains_standard_attention_only(run_train):
    code, out, err = run_train("mta", "--baseline", "--steps", "2", "--eval-every", "2", "--blocks", "2",
                               "--test-size", "20", "--d-model", "16")
    assert code == 0, err
    [result] = result_lines(out)
    assert result["variant"] == "standard" and "key-query convolution" not in out


def test_cli_reads_the_authors_format(run_train, tmp_path):
    path = tmp_path / "train.jsonl"
    examples = tasks.LetterBlocks(5, 2).examples(30, np.random.default_rng(3))
    tasks.write_letter_blocks(path, examples)
    assert json.loads(path.read_text().splitlines()[0]) == {"src": examples[0][0], "tgt": examples[0][1]}
    code, out, err = run_train("mta", "--data", path, "--test-data", path, "--steps", "2",
                               "--eval-every", "2", "--d-model", "16")
    assert code == 0, err
    [result] = result_lines(out)
    assert result["metrics"]["blocks"] == 5  # the file's shape, not the flag's default


@pytest.mark.parametrize("line", ['{"src": "abcde#ab"}', 'not json', '{"src": "ABCDE#AB", "tgt": "ABCDE"}'])
def test_cli_rejects_a_bad_data_file_in_one_line(run_train, tmp_path, line):
    path = tmp_path / "bad.jsonl"
    path.write_text(line + "\n")
    code, out, err = run_train("mta", "--data", path, "--steps", "1")
    assert code == 2 and err.count("\n") == 1 and "bad.jsonl:1" in err


def test_cli_rejects_impossible_sizes(run_train):
    code, _, err = run_train("mta", "--query-letters", "6", "--steps", "1")
    assert code == 2 and "query letters" in err
    code, _, err = run_train("mta", "--heads", "3", "--steps", "1")
    assert code == 2 and "divisible" in err
