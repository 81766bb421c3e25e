"""Tests for experiments/cope_experiment.py (`python train.py cope`): the held-out sets and their errors,
the training choices, the command line and its bad inputs (the tasks themselves: test_cope_tasks.py)."""
import json
import math

import numpy as np
import pytest
import torch

import train
from conftest import HAS_MATPLOTLIB, check_result, result_lines
from experiments import cope_experiment
from experiments.cope_tasks import CountingTask, to_batch
from test_cope_tasks import programs


def parse(*argv):
    return train.build_parser().parse_args(["cope", *argv])


def test_default_tasks_and_their_out_of_distribution_tests():
    train_task, tests = cope_experiment.task_sets(parse())
    assert tests[""] is train_task
    assert (train_task.n_vars, train_task.min_statements, train_task.max_statements) == (1, 3, 32)
    assert (tests["ood"].n_vars, tests["ood"].min_statements, tests["ood"].max_statements) == (1, 33, 64)
    train_task, tests = cope_experiment.task_sets(parse("--task", "flipflop"))
    assert (train_task.length, train_task.p_ignore) == (32, 0.8)
    assert [(tests[k].length, tests[k].p_ignore) for k in ("", "dense", "sparse")] == [(32, 0.8), (32, 0.1), (32, 0.98)]
    train_task, tests = cope_experiment.task_sets(parse("--task", "selective-copy"))
    assert [(tests[k].n_tokens, tests[k].n_blanks) for k in ("", "dense", "sparse")] == [(8, 16), (8, 8), (8, 32)]


class Predicts7:
    """A model that predicts token 7 everywhere."""

    def __call__(self, inputs):
        return torch.nn.functional.one_hot(torch.full_like(inputs, 7), 10).float()


def test_errors_count_wrong_target_tokens_and_sequences_with_any_wrong():
    samples = [([1, 2, 7, 7], [False, False, True, True]), ([1, 7, 5], [False, True, True]),
               ([1, 2, 3], [False, False, True])]
    ids, is_target = (train.pad_batch([s[i] for s in samples]) for i in (0, 1))
    batches = cope_experiment.held_out(ids, is_target.bool(), "cpu")
    assert cope_experiment.errors(Predicts7(), batches) == (2 / 5, 2 / 3)


def test_held_out_batches_are_sorted_by_length_and_cut_to_their_longest():
    """300 programs of 3 tokens and 100 of 5, shuffled: 250 short ones, then the rest, none lost."""
    rows = [[1, 2, 7]] * 300 + [[1, 2, 3, 4, 5]] * 100
    order = np.random.default_rng(0).permutation(len(rows))
    ids = train.pad_batch([rows[i] for i in order])
    is_target = (ids != 0) & (torch.arange(ids.shape[1]) == (ids != 0).sum(1, keepdim=True) - 1)
    batches = cope_experiment.held_out(ids, is_target, "cpu")
    assert [tuple(inputs.shape) for inputs, _ in batches] == [(250, 2), (150, 4)]
    assert cope_experiment.errors(Predicts7(), batches) == (100 / 400, 100 / 400)   # the 7s of the short ones


# ------------------------------------------------------------------ training choices

@pytest.fixture
def captured(monkeypatch):
    """Replaces the training loop: records what the experiment passes to it, trains nothing."""
    calls = []

    def fake_loop(model, optimizer, next_batch, loss_fn, evaluate, solved, steps, eval_every, lr_at=None, **kw):
        calls.append(dict(model=model, optimizer=optimizer, next_batch=next_batch, loss_fn=loss_fn,
                          solved=solved, steps=steps, lr_at=lr_at))
        return {"steps": 1, "seconds": 0.01, "solved": False, "metrics": evaluate(model), "losses": [1.0]}

    monkeypatch.setattr(train, "training_loop", fake_loop)
    return calls


def test_defaults_are_the_documented_sizes_and_training():
    args = parse()
    assert (args.task, args.pos, args.d_model, args.layers, args.heads, args.npos_max, args.vars,
            args.max_statements, args.ood_statements, args.batch_size, args.lr, args.target, args.eval_every) == \
        ("counting", "cope", 64, 2, 4, 64, 1, 32, 64, 32, 1e-3, 0.01, 100)


def test_training_is_adamw_with_warmup_and_cosine_over_1500_steps_on_fresh_batches_of_32(run_train, captured):
    code, out, err = run_train("cope", "--test-size", "5")
    assert code == 0, err
    (call,) = captured
    config = call["model"].config
    assert (config.pos, config.n_layer, config.n_head, config.d_model, config.d_ff, config.npos_max) == \
        ("cope", 2, 4, 64, 256, 64)
    assert call["steps"] == 1500
    optimizer = call["optimizer"]
    assert type(optimizer).__name__ == "AdamW" and optimizer.defaults["weight_decay"] == 0
    lr, warmup = 1e-3, 1500 // 20          # linear warmup over 5% of the steps, cosine to 0.1 x peak
    for step, expected in [(1, lr / warmup), (warmup // 2, lr * (warmup // 2) / warmup), (warmup, lr),
                           (1500, 0.1 * lr), ((1500 + warmup) // 2, 0.55 * lr)]:
        assert math.isclose(call["lr_at"](step), expected, rel_tol=1e-3), step
    first, second = call["next_batch"](), call["next_batch"]()
    assert first[0].shape[0] == 32 and not np.array_equal(first[0].numpy(), second[0].numpy()[:, :first[0].shape[1]])
    assert call["solved"]({"error": 0.01}) and not call["solved"]({"error": 0.011})


def test_compare_trains_each_variant_800_steps_without_stopping_early(run_train, captured):
    code, out, err = run_train("cope", "--test-size", "5", "--compare", "--seeds", "1")
    assert code == 0, err
    assert [c["model"].config.pos for c in captured] == ["cope", "abs", "rope"]
    assert all(c["steps"] == 800 and not c["solved"]({"error": 0.0}) for c in captured)
    rows = {line.split("|")[2].strip(): line.split("|")[-2].strip() for line in out.splitlines()
            if line.startswith("| counting")}
    assert rows == {"cope": "0.000", "abs": "0.053", "rope": "—"}     # Table 3, 1 variable


def test_paper_errors_are_table_3():
    table3 = {"abs": (5.3, 67.6, 71.5), "rel": (1.1, 17.8, 22.4), "cope": (0.0, 1.2, 7.4)}
    assert cope_experiment.PAPER_ERROR == {("counting", n, pos): errors[i] for pos, errors in table3.items()
                                           for i, n in enumerate((1, 3, 5))}


def test_the_loss_is_the_cross_entropy_of_the_answer_alone(run_train, captured):
    run_train("cope", "--test-size", "5")
    model, loss_fn = captured[0]["model"], captured[0]["loss_fn"]
    ids, is_target = CountingTask(3, 3, 10).draw(4, torch.Generator().manual_seed(6))
    batch = to_batch(ids, is_target)
    with torch.no_grad():
        logits = model(batch[0])
        answers = [len([t for t in row if t]) - 1 for row in ids.tolist()]   # the last token of each program
        expected = np.mean([torch.nn.functional.cross_entropy(logits[r, n - 1], ids[r, n]).item()
                            for r, n in enumerate(answers)])
        assert math.isclose(loss_fn(model, batch).item(), expected, rel_tol=1e-5)


def test_data_file_batches_are_drawn_from_its_programs(run_train, captured, tmp_path):
    examples = programs(CountingTask(3, 3, 6), 5, 7)
    path = tmp_path / "count.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in examples))
    code, out, err = run_train("cope", "--test-size", "5", "--data", path)
    assert code == 0, err
    encoded = [CountingTask().encode(e)[0] for e in examples]
    inputs, _ = captured[0]["next_batch"]()
    for row in inputs.tolist():                     # right-padded with 0; the longest lost its last token
        row = [t for t in row if t != 0]
        assert any(row in (ids, ids[:-1]) for ids in encoded)


# ------------------------------------------------------------------ the command line

TINY = ["--steps", "4", "--eval-every", "2", "--d-model", "16", "--layers", "1", "--batch-size", "8",
        "--test-size", "20", "--max-statements", "6", "--ood-statements", "10"]


def test_default_command_prints_a_valid_result_line(run_train, tmp_path):
    code, out, err = run_train("cope", *TINY, "--out", tmp_path)
    assert code == 0, err
    (result,) = result_lines(out)
    check_result(result, "cope")
    assert result["task"] == "counting" and result["variant"] == "cope"
    assert {"error", "error_ood"} <= set(result["metrics"])
    assert "gates of" in out and "cope gates seen from the last token" in out and "L1H1" in out
    if HAS_MATPLOTLIB:
        assert (tmp_path / "gates.png").exists()


def test_out_of_distribution_is_evaluated_when_the_run_stops_at_its_last_step_or_target(run_train):
    for extra, evaluations in [([], 2), (["--target", "1"], 1)]:     # --target 1: solved at the first
        code, out, err = run_train("cope", *TINY, *extra)
        assert code == 0, err
        progress = [line for line in out.splitlines() if line.startswith("[cope] step")]
        assert len(progress) == evaluations and ["error_ood" in line for line in progress] == \
            [False] * (evaluations - 1) + [True]


def test_compare_trains_every_variant_and_prints_the_table(run_train):
    code, out, err = run_train("cope", *TINY, "--compare", "--seeds", "1", "--task", "selective-copy")
    assert code == 0, err
    assert [r["variant"] for r in result_lines(out)] == ["cope", "abs", "rope"]
    assert "| task" in out and "selective-copy" in out


def test_flip_flop_run_under_bf16_autocast_reports_dense_and_sparse_errors(run_train):
    code, out, err = run_train("cope", *TINY, "--task", "flipflop", "--pos", "rel", "--dtype", "bfloat16")
    assert code == 0, err
    (result,) = result_lines(out)
    assert result["dtype"] == "bfloat16" and {"error", "error_dense", "error_sparse"} <= set(result["metrics"])


def test_data_file_in_the_official_format_trains_and_evaluates(run_train, tmp_path):
    path = tmp_path / "count.jsonl"
    lines = [{"context": "pass; c = 0 ; c ++; pass;", "question": "print c", "answer": "1"}]
    lines += programs(CountingTask(3, 3, 6), 30, 3)
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    code, out, err = run_train("cope", *TINY, "--data", path, "--eval-data", path)
    assert code == 0, err
    (result,) = result_lines(out)
    assert "error_file" in result["metrics"]


GOOD = json.dumps({"context": "a = 0 ; pass; a ++;", "question": "print a", "answer": "1"})


def program(context, question="print a", answer="1"):
    return json.dumps({"context": context, "question": question, "answer": answer})


@pytest.mark.parametrize("second_line, word", [
    (program("a = 0 ; a ++;", answer="2"), "prints 1"),                  # answer not what it prints
    (program(""), "empty"),                                              # an empty program
    (program("   "), "empty"),
    (program("pass; " * 200_000 + "a = 0 ;"), "characters"),             # a line of 1 MB
    (program("a = 0 ; " + "pass; " * 1999, answer="0"), "statements"),   # 2,000 statements
    (program("a = 12 ;", answer="12"), "unknown tokens"),
    ("not json", "Expecting value"),
    ("[" * 50_000, "recursion"),
    ("[1, 2]", "fields"),
    (json.dumps({"context": "a = 0 ;", "question": "print a"}), "fields"),
    ("", "empty line"),
    (program("a = 0 ;", question="show a", answer="0"), "print"),
    (program("a = 0 ;", question="print b", answer="0"), "never sets"),
    (program("a ++; a = 0 ;", answer="0"), "is not"),
    (program("a = 0 ; a -- ;", answer="0"), "is not"),
])
def test_bad_data_line_is_refused_with_its_line_number(run_train, tmp_path, second_line, word):
    path = tmp_path / "bad.jsonl"
    path.write_text(GOOD + "\n" + second_line + "\n" + GOOD + "\n")
    for flag in ("--data", "--eval-data"):
        code, out, err = run_train("cope", *TINY, flag, path)
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
        assert "bad.jsonl:2: " in err and word in err, err


def test_bad_data_file_is_refused_in_one_line(run_train, tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "binary.jsonl").write_bytes(GOOD.encode() + b"\n\xff\xfe\x00\x01\n")
    for name, word in [("missing.jsonl", "cannot read"), ("empty.jsonl", "no programs"), (".", "cannot read"),
                       ("binary.jsonl", "binary.jsonl:2: ")]:
        code, out, err = run_train("cope", *TINY, "--data", tmp_path / name)
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in err and word in err, (name, err)


@pytest.mark.parametrize("argv, word", [
    (["--d-model", "0"], "--d-model"), (["--d-model", "5000"], "--d-model"), (["--d-model", "x"], "--d-model"),
    (["--layers", "0"], "--layers"), (["--layers", "65"], "--layers"),
    (["--heads", "0"], "--heads"), (["--heads", "65"], "--heads"),
    (["--npos-max", "1"], "--npos-max"), (["--npos-max", "5000"], "--npos-max"),
    (["--test-size", "0"], "--test-size"), (["--test-size", "100001"], "--test-size"),
    (["--vars", "0"], "--vars"), (["--vars", "27"], "--vars"),
    (["--max-statements", "2"], "--max-statements"), (["--max-statements", "1024"], "--max-statements"),
    (["--ood-statements", "3"], "--ood-statements"), (["--ood-statements", "1025"], "--ood-statements"),
    (["--max-statements", "10", "--ood-statements", "10"], "--ood-statements"),
    (["--task", "flipflop", "--length", "1"], "--length"), (["--length", "1025"], "--length"),
    (["--task", "flipflop", "--p-ignore", "-0.1"], "--p-ignore"),
    (["--task", "flipflop", "--p-ignore", "nan"], "--p-ignore"),
    (["--task", "flipflop", "--p-ignore", "1"], "p_ignore"),
    (["--tokens", "0"], "--tokens"), (["--tokens", "257"], "--tokens"),
    (["--blanks", "0"], "--blanks"), (["--blanks", "1025"], "--blanks"),
    (["--target", "nan"], "--target"), (["--target", "2"], "--target"),
    (["--seeds", "0"], "--seeds"), (["--seeds", "101"], "--seeds"),
    (["--pos", "alibi"], "--pos"), (["--task", "sorting"], "--task"),
    (["--d-model", "10", "--heads", "4"], "divisible"), (["--pos", "rope", "--d-model", "12", "--heads", "4"], "RoPE"),
    (["--task", "flipflop", "--data", "x.jsonl"], "counting"),
])
def test_bad_flag_is_one_line_on_stderr_and_exit_2(run_train, argv, word):
    code, out, err = run_train("cope", *TINY, *argv)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err and word in err, (argv, err)


def test_compare_checks_every_variant_before_training_any(run_train):
    code, out, err = run_train("cope", *TINY, "--compare", "--d-model", "12", "--heads", "4")
    assert code == 2 and "RoPE" in err and "step" not in out


def test_a_short_run_lowers_the_loss(run_train):
    code, out, err = run_train("cope", "--steps", "60", "--eval-every", "60", "--d-model", "32",
                               "--layers", "1", "--test-size", "20", "--task", "selective-copy",
                               "--tokens", "3", "--blanks", "3", "--lr", "3e-3")
    assert code == 0, err
    (result,) = result_lines(out)
    assert result["metrics"]["final_loss"] < result["metrics"]["first_loss"] * 0.8
