"""Tests for experiments/mta_experiment.py: batches, loss, metrics, data files and `train.py mta`
(the generator's rules: test_letter_blocks.py)."""
import inspect
import itertools
import json

import pytest
import torch
import torch.nn.functional as F

import train
from conftest import HAS_MATPLOTLIB, check_result, result_lines
from experiments import letter_blocks, mta_experiment
from experiments.letter_blocks import LETTERS, LetterBlocks


def seeded(seed):
    return torch.Generator().manual_seed(seed)


# ---- batches, loss, metrics ---------------------------------------------------------------------

def test_batches_predict_the_target_from_the_position_before_it():
    examples = [("abcde.fghij#hf", "fghij"), ("abcde.fghij.klmno#ca", "abcde")]
    tokens, positions, targets = LetterBlocks.collate(examples)
    for row, (src, tgt) in enumerate(examples):
        full = LetterBlocks.encode(src + tgt)
        for n in range(len(tgt)):  # the token at a position is followed by the letter it must predict
            assert full[positions[row, n] + 1] == targets[row, n]
            assert tokens[row, positions[row, n]] == full[positions[row, n]]


class FixedLogits(torch.nn.Module):
    """A stand-in model: the same logits whatever the input."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, tokens):
        return self.logits[: tokens.size(0), : tokens.size(1)]


def test_errors_by_hand():
    examples = [("abcde.fghij#ab", "abcde"), ("abcde.fghij#gh", "fghij"), ("fghij.abcde#ec", "abcde"),
                ("abcde.fghij#ji", "fghij")]
    logits = torch.zeros(4, 18, 28)
    for row, (src, tgt) in enumerate(examples):  # predict every target letter right ...
        for n, letter in enumerate(tgt):
            logits[row, len(src) - 1 + n, LETTERS.index(letter)] = 1.0
    logits[0, 13, 25], logits[1, 15, 25], logits[3, 13, 25], logits[3, 17, 25] = 5, 5, 5, 5  # ... but these: z
    metrics = mta_experiment.mta_errors(FixedLogits(logits), mta_experiment.test_batches(examples, "cpu"))
    assert metrics == pytest.approx({"sequence_error": 3 / 4, "token_error": 4 / 20,
                                     "first_letter_error": 2 / 4, "copy_error": 2 / 16})


def spy_on_training(monkeypatch):
    """Record the arguments of every train.training_loop call by name; the real loop still runs."""
    calls, real = [], train.training_loop

    def spy(*args, **kwargs):
        calls.append(inspect.signature(real).bind(*args, **kwargs).arguments)
        return real(*args, **kwargs)
    monkeypatch.setattr(train, "training_loop", spy)
    return calls


def test_training_is_adamw_098_with_warmup_and_a_loss_on_the_target_letters_only(run_train, monkeypatch):
    calls = spy_on_training(monkeypatch)
    code, _, err = run_train("mta", "--steps", "7", "--warmup", "3", "--eval-every", "7", "--blocks", "2",
                             "--test-size", "10", "--d-model", "16", "--lr", "0.002")
    assert code == 0, err
    [call] = calls
    optimizer, next_batch, loss_fn, solved, lr_at = (call[k] for k in ("optimizer", "next_batch", "loss_fn",
                                                                        "solved", "lr_at"))
    assert isinstance(optimizer, torch.optim.AdamW)
    [group] = optimizer.param_groups
    assert group["betas"] == (0.9, 0.98) and group["weight_decay"] == 0.0  # the official toy config
    assert lr_at(0) == 0 and lr_at(3) == pytest.approx(0.002) and lr_at(7) == pytest.approx(0.0002)
    assert solved({"sequence_error": 0.01}) and not solved({"sequence_error": 0.0101})  # --target-error
    tokens, positions, targets = next_batch()
    assert tokens.size(0) == 64 and not torch.equal(tokens, next_batch()[0])  # batch 64, fresh each step
    examples = [("abcde.fghij#ab", "abcde"), ("abcde.fghij.klmno#lk", "klmno")]
    logits = torch.randn(2, 24, 28)
    expected = F.cross_entropy(torch.stack([logits[r, len(src) - 1 + n] for r, (src, tgt) in enumerate(examples)
                                            for n in range(5)]),
                               torch.tensor([LETTERS.index(ch) for _, tgt in examples for ch in tgt]))
    assert torch.allclose(loss_fn(FixedLogits(logits), LetterBlocks.collate(examples)), expected)


def test_flag_defaults_are_the_papers_task_and_the_documented_budget():
    args = train.build_parser().parse_args(["mta"])
    assert (args.query_letters, args.block_length, args.batch_size, args.test_size) == (2, 5, 64, 1000)
    assert (args.kq_conv, args.c_q, args.c_k, args.head_mix, args.head_norm, args.heads) == ("pre", 2, 9, "", "", 2)
    assert (args.layers, args.d_model, args.lr, args.warmup, args.target_error) == (2, 64, 3e-3, 100, 0.01)
    assert (args.blocks, args.steps) == (2, 2500)


def test_compare_trains_both_models_at_the_default_size_and_schedule(run_train, monkeypatch):
    seen = []

    def no_training(model, optimizer, next_batch, loss_fn, evaluate, solved, steps, eval_every, lr_at, **settings):
        seen.append((steps, lr_at(steps), next_batch()[0].size(1)))
        model.eval()
        with torch.no_grad():
            metrics = evaluate(model)
        return {"steps": 0, "seconds": 0.0, "solved": False, "diverged": False, "metrics": metrics, "losses": [0.0]}
    monkeypatch.setattr(train, "training_loop", no_training)
    code, out, err = run_train("mta", "--compare", "--seeds", "1", "--test-size", "10", "--d-model", "16")
    assert code == 0, err
    # 2 blocks: 2 x (5 letters + '.' or '#'), 2 query letters, the target but its last letter = 18 tokens;
    # the cosine ends (0.1 x 3e-3) at step 2500
    assert seen == [(2500, pytest.approx(3e-4), 18)] * 2
    assert [r["metrics"]["blocks"] for r in result_lines(out)] == [2, 2]
    code, out, err = run_train("mta", "--test-size", "10", "--d-model", "16", "--blocks", "4", "--steps", "300")
    assert code == 0, err
    assert seen[2:] == [(300, pytest.approx(3e-4), 30)]  # as told: 4 blocks (4 x 6 + 2 + 4 tokens), 300 steps


def test_the_test_set_is_fixed_whatever_the_seed():
    parse = lambda *flags: train.build_parser().parse_args(["mta", "--test-size", "30", *flags])
    _, _, first = mta_experiment.mta_data(parse("--seed", "0"))
    _, _, second = mta_experiment.mta_data(parse("--seed", "5"))
    assert first == second and len(first) == 30


# ---- the command line -----------------------------------------------------------------------------

def test_cli_prints_a_valid_result_line(run_train, tmp_path):
    code, out, err = run_train("mta", "--steps", "6", "--eval-every", "3", "--blocks", "3",
                               "--test-size", "50", "--out", tmp_path)
    assert code == 0, err
    [result] = result_lines(out)
    check_result(result, "mta")
    assert {"sequence_error", "token_error", "first_letter_error", "copy_error"} <= set(result["metrics"])
    assert "attention before the key-query convolution" in out
    assert (tmp_path / "result.json").exists()
    if HAS_MATPLOTLIB:
        assert (tmp_path / "attention-after-conv.png").exists() and (tmp_path / "loss.png").exists()


def test_cli_one_letter_blocks_give_a_strict_json_result(run_train):
    code, out, err = run_train("mta", "--steps", "2", "--eval-every", "2", "--blocks", "3", "--block-length", "1",
                               "--query-letters", "1", "--test-size", "10", "--d-model", "16", "--c-k", "3")
    assert code == 0, err
    [line] = [line for line in out.splitlines() if line.startswith("result: ")]
    result = json.loads(line[len("result: "):], parse_constant=lambda name: pytest.fail(name))
    assert result["metrics"]["copy_error"] == 0.0  # no letters to copy


def test_cli_compare_prints_both_models_and_the_papers_numbers(run_train, monkeypatch):
    calls = spy_on_training(monkeypatch)
    code, out, err = run_train("mta", "--compare", "--seeds", "2", "--steps", "2", "--eval-every", "2",
                               "--blocks", "2", "--test-size", "20", "--d-model", "16")
    assert code == 0, err
    results = result_lines(out)
    assert [r["variant"] for r in results] == ["mta", "standard"]
    assert [call["model"].config.mta for call in calls] == [True, True, False, False]  # 2 seeds each
    assert all(r["metrics"]["seeds"] == [0, 1] for r in results)
    assert "| **standard** (ours)" in out and "| MTA (paper)" in out
    assert "look-up error % by seed" in out and "copy error % by seed" in out and "trained for" in out
    assert "77.7 / 75.3 / 1.9" in out and "51.6" in out and "0.0 / 0.0 / 0.2" in out  # the toy README's


def test_cli_flags_reach_the_model_config(run_train, monkeypatch):
    calls = spy_on_training(monkeypatch)
    code, _, err = run_train("mta", "--steps", "1", "--eval-every", "1", "--blocks", "2", "--test-size", "5",
                             "--d-model", "24", "--heads", "4", "--layers", "3", "--kq-conv", "post", "--c-q", "3",
                             "--c-k", "5", "--head-mix", "pre", "--c-h", "2", "--head-norm", "gate")
    assert code == 0, err
    c = calls[0]["model"].config
    assert (c.d_model, c.n_heads, c.n_layers, c.kq_conv, c.c_q, c.c_k) == (24, 4, 3, "post", 3, 5)
    assert (c.head_mix, c.c_h, c.head_norm, c.mta, c.vocab_size) == ("pre", 2, "gate", True, 28)


def test_cli_baseline_trains_standard_attention_only(run_train, monkeypatch):
    calls = spy_on_training(monkeypatch)
    code, out, err = run_train("mta", "--baseline", "--steps", "2", "--eval-every", "2", "--blocks", "2",
                               "--test-size", "20", "--d-model", "16")
    assert code == 0, err
    [result] = result_lines(out)
    assert result["variant"] == "standard" and "key-query convolution" not in out
    assert [call["model"].config.mta for call in calls] == [False]


def test_cli_reads_the_authors_format_and_trains_on_the_files_examples(run_train, tmp_path, monkeypatch):
    path = tmp_path / "train.jsonl"
    examples = LetterBlocks(5, 2).examples(30, seeded(3))
    letter_blocks.write_letter_blocks(path, examples)
    assert json.loads(path.read_text().splitlines()[0]) == {"src": examples[0][0], "tgt": examples[0][1]}
    calls = spy_on_training(monkeypatch)
    code, out, err = run_train("mta", "--data", path, "--test-data", path, "--steps", "2",
                               "--eval-every", "2", "--d-model", "16")
    assert code == 0, err
    [result] = result_lines(out)
    assert result["metrics"]["blocks"] == 5  # the file's shape, not the flag's default
    tokens, _, _ = calls[0]["next_batch"]()  # next_batch: rows are the file's examples
    texts = {"".join(letter_blocks.BLOCK_VOCAB[t] for t in row).rstrip("#") for row in tokens.tolist()}
    assert texts <= {(src + tgt[:-1]).rstrip("#") for src, tgt in examples}


def test_the_data_file_sets_the_task_shape_without_writing_args(tmp_path):
    path = tmp_path / "test.jsonl"
    examples = LetterBlocks(6, 3, 7).examples(5, seeded(0))
    letter_blocks.write_letter_blocks(path, examples)
    args = train.build_parser().parse_args(["mta", "--test-data", str(path)])
    task, train_examples, test = mta_experiment.mta_data(args)
    assert (task.n_blocks, task.query_letters, task.block_length) == (6, 3, 7)
    assert train_examples is None and len(test) == 5
    assert (args.blocks, args.query_letters, args.block_length) == (2, 2, 5)  # as given


def test_cli_a_one_block_file_of_26_letter_targets_runs(run_train, tmp_path):
    path = tmp_path / "whole.jsonl"
    path.write_text(json.dumps({"src": LETTERS[::-1] + "#qa", "tgt": LETTERS[::-1]}) + "\n")
    code, out, err = run_train("mta", "--data", path, "--steps", "1", "--eval-every", "1", "--test-size", "5",
                               "--d-model", "16")
    assert code == 0, err


def example(src, tgt):
    return json.dumps({"src": src, "tgt": tgt})


GOOD = example("abcde.fghij#ab", "abcde")


@pytest.mark.parametrize("lines,where,word", [
    (["not json"], 1, "JSON"),
    (['{"src": "abcde#ab"}'], 1, "'tgt'"),
    (["[1, 2]"], 1, "object"),
    ([example("ABCDE#AB", "ABCDE")], 1, "letters"),
    ([example("abcde#fghij#ab", "abcde")], 1, "one '#'"),
    ([example("abcde.fghij#", "abcde")], 1, "query"),
    ([example("abcde.fghij#aa", "abcde")], 1, "distinct"),
    ([GOOD, example("abcde.fghij#ab", "abcdf")], 2, "not a block"),
    ([example("abcde.fghij#ab", "abcd")], 1, "letters"),
    ([example("abcde.fgh#ab", "abcde")], 1, "letters"),
    ([example("abcde.fghij#af", "abcde")], 1, "not in 'tgt'"),
    ([example("abcde.bafgh#ab", "abcde")], 1, "another block"),
    ([example("abcda.fghij#ab", "abcda")], 1, "distinct"),
    ([example("abcde.fghij.fghij#ab", "abcde")], 1, "distinct"),
    ([GOOD, example("abcd.fghi#ab", "abcd")], 2, "line 1's"),
    ([GOOD, "", GOOD], 2, "empty"),
    ([GOOD, example("a" * 1_000_000 + "#a", "a")], 2, "longer"),
    ([example(".".join(["".join(p) for p in itertools.islice(itertools.permutations("abcdef", 5), 1, 200)])
              + ".zyxwv#zy", "zyxwv")], 1, "more than"),
    ([example(LETTERS + "." + LETTERS[::-1] + "#ab", LETTERS)], 1, "another block"),
])
def test_cli_refuses_a_bad_data_file_with_its_line_number(run_train, tmp_path, lines, where, word):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    for flag in ("--data", "--test-data"):
        code, out, err = run_train("mta", flag, path, "--steps", "1", "--test-size", "5")
        assert code == 2 and err.count("\n") == 1 and f"bad.jsonl:{where}:" in err and word in err, err
        assert "Traceback" not in err + out


@pytest.mark.parametrize("content,word", [(b"", "no examples"), (b'{"src": "\xff"}\n', "UTF-8")])
def test_cli_refuses_an_empty_or_binary_data_file(run_train, tmp_path, content, word):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    code, _, err = run_train("mta", "--data", path, "--steps", "1")
    assert code == 2 and err.count("\n") == 1 and word in err


def test_cli_refuses_files_of_different_block_lengths_and_a_missing_file(run_train, tmp_path):
    five, four = tmp_path / "five.jsonl", tmp_path / "four.jsonl"
    five.write_text(GOOD + "\n")
    four.write_text(example("abcd.fghi#ab", "abcd") + "\n")
    code, _, err = run_train("mta", "--data", five, "--test-data", four, "--steps", "1")
    assert code == 2 and err.count("\n") == 1 and "differ in length" in err
    code, _, err = run_train("mta", "--data", tmp_path / "missing.jsonl", "--steps", "1")
    assert code == 2 and err.count("\n") == 1 and "cannot read" in err


@pytest.mark.parametrize("flags,word", [
    (["--blocks", "0"], "--blocks"), (["--blocks", "1000"], "--blocks"), (["--blocks", "x"], "--blocks"),
    (["--query-letters", "0"], "--query-letters"), (["--query-letters", "27"], "--query-letters"),
    (["--block-length", "27"], "--block-length"), (["--test-size", "0"], "--test-size"),
    (["--test-size", "1000000"], "--test-size"), (["--seeds", "0"], "--seeds"), (["--seeds", "1000"], "--seeds"),
    (["--d-model", "1"], "--d-model"), (["--d-model", "5000"], "--d-model"), (["--layers", "0"], "--layers"),
    (["--layers", "65"], "--layers"), (["--heads", "0"], "--heads"), (["--heads", "1000"], "--heads"),
    (["--c-q", "0"], "--c-q"), (["--c-q", "1000"], "--c-q"), (["--c-k", "100"], "--c-k"),
    (["--c-h", "0"], "--c-h"), (["--c-h", "1000"], "--c-h"), (["--warmup", "0"], "--warmup"),
    (["--warmup", "10000000"], "--warmup"), (["--target-error", "1.5"], "--target-error"),
    (["--target-error", "-0.1"], "--target-error"), (["--target-error", "nan"], "--target-error"),
    (["--kq-conv", "both"], "--kq-conv"), (["--head-norm", "layer"], "--head-norm"),
    # cross-flag checks: no hang, no traceback
    (["--block-length", "26"], "distractor"), (["--query-letters", "6"], "query letters"),
    (["--blocks", "200"], "more than"), (["--heads", "3"], "divisible"),
    (["--d-model", "12", "--heads", "4"], "even"), (["--head-mix", "pre", "--c-h", "3"], "divisible"),
    (["--blocks", "2", "--c-k", "40"], "larger than the sequences"),
    (["--blocks", "2", "--c-q", "30"], "larger than the sequences"),
])
def test_cli_refuses_bad_flags_in_one_line(run_train, flags, word):
    code, out, err = run_train("mta", *flags, "--steps", "1", "--test-size", "5")
    assert code == 2 and err.count("\n") == 1 and word in err, err
    assert "Traceback" not in err + out
