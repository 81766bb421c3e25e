"""Tests for experiments/cope_experiment.py (`python train.py cope`): the generators' distributions
against the authors' generators, the official data format and its checks, the training choices,
the command line and its bad inputs."""
import json
import math
import re
from collections import Counter

import numpy as np
import pytest

import train
from conftest import HAS_MATPLOTLIB, check_result, result_lines
from experiments import cope_experiment
from experiments.cope_experiment import CountingTask, FlipFlop, SelectiveCopy, run_program


def close(count, total, p, sigmas=5):
    """count / total is p within `sigmas` standard deviations of a binomial sample."""
    return abs(count / total - p) <= sigmas * math.sqrt(p * (1 - p) / total) + 1e-12


def replay(context):
    """A program's statements as (op, variable, values before it), parsed independently of the code."""
    values, out = {}, []
    for statement in context.split(";")[:-1]:   # `x = 0 ;`, `x ++;` and `pass;` all end in ;
        words = statement.split()
        if words == ["pass"]:
            out.append(("pass", None, dict(values)))
        elif len(words) == 2 and words[1] == "++":
            out.append(("increment", words[0], dict(values)))
            values[words[0]] += 1                   # KeyError: an increment of a variable never set
        else:
            assert len(words) == 3 and words[1:] == ["=", "0"], statement
            out.append(("set", words[0], dict(values)))
            values[words[0]] = 0
    return out, values


# ------------------------------------------------------------------ counting (section 4.3)

def test_counting_programs_have_the_official_format_and_answer():
    task = CountingTask(n_vars=3, min_statements=3, max_statements=40)
    rng = np.random.default_rng(0)
    allowed = {"pass;"} | {f"{v} = 0 ;" for v in "abc"} | {f"{v} ++;" for v in "abc"}
    for _ in range(200):
        example = task.example(rng)
        statements = re.findall(r"[a-z] = 0 ;|[a-z] \+\+;|pass;", example["context"])
        assert 3 <= len(statements) <= 40 and set(statements) <= allowed
        assert example["context"] == " ".join(statements)   # nothing else, single spaces
        variable = example["question"].split()[1]
        assert example["question"] == f"print {variable}"
        assert example["answer"] == str(replay(example["context"])[1][variable])
        ids, is_target = task.encode(example)
        assert task.words(ids)[-3:] == ["print", variable, example["answer"]]
        assert is_target == [False] * (len(ids) - 1) + [True]      # the loss is on the answer only


@pytest.fixture(scope="module")
def long_programs():
    """Programs of 100-200 statements over 3 variables: enough statements for frequencies."""
    rng = np.random.default_rng(1)
    return [CountingTask(3, 100, 200).example(rng) for _ in range(300)]


def test_counting_statements_are_drawn_with_weights_set_1_increment_7_pass_50(long_programs):
    """While an increment can be made (a variable set, none at the cap), a statement is set / increment
    / pass with probability 1/58, 7/58, 50/58 (official OP_WEIGHTS); before any set, never an increment."""
    free, before_any_set = Counter(), Counter()
    for example in long_programs:
        for op, _, values in replay(example["context"])[0]:
            if not values:
                before_any_set[op] += 1
            elif max(values.values()) < 10:
                free[op] += 1
    total = sum(free.values())
    assert total > 20000
    for op, weight in {"set": 1, "increment": 7, "pass": 50}.items():
        assert close(free[op], total, weight / 58), (op, free[op] / total)
    assert before_any_set["increment"] == 0 and before_any_set["pass"] > 0


def test_counting_variables_set_incremented_and_asked_are_uniform_among_the_allowed(long_programs):
    sets, increments, asked, asked_last_set, all_set = Counter(), Counter(), Counter(), 0, 0
    for example in long_programs:
        statements, values = replay(example["context"])
        for op, var, before in statements:
            if op == "set":
                sets[var] += 1
            elif op == "increment" and len(before) == 3 and max(before.values()) < 10:
                increments[var] += 1                # three set variables, none at the cap
        var = example["question"].split()[1]
        assert var in values                        # the question asks about a set variable
        asked[var] += 1
        if len(values) == 3:
            all_set += 1
            asked_last_set += var == [v for op, v, _ in statements if op == "set"][-1]
    assert set(sets) == set(increments) == {"a", "b", "c"}   # only the first n_vars letters
    for counts in (sets, increments, asked):
        assert all(close(counts[v], sum(counts.values()), 1 / 3) for v in "abc"), counts
    assert all_set > 50 and close(asked_last_set, all_set, 1 / 3)


def test_counting_values_are_capped_at_10_and_reach_it():
    rng = np.random.default_rng(2)
    task = CountingTask(1, 100, 200)
    highest = 0
    for _ in range(150):
        example = task.example(rng)
        statements, values = replay(example["context"])
        highest = max([highest] + [max(before.values(), default=0) for _, _, before in statements])
        assert 0 <= int(example["answer"]) <= 10
    assert highest == 10


class ScriptedDraws:
    """A generator whose operation draws follow a script and whose other draws are 0."""

    def __init__(self, ops):
        self.ops = list(ops)

    def choice(self, n, p=None):
        return CountingTask._ops.index(self.ops.pop(0))

    def integers(self, *args, **kwargs):
        return 0


def test_an_increment_that_cannot_be_made_is_redrawn_not_replaced():
    """Official generator: an increment with no variable set, or of a variable at 10, raises
    GenerationFail and the statement (its operation included) is drawn again."""
    task = CountingTask(n_vars=1)
    assert task._statement(ScriptedDraws(["increment", "set"]), {}) == "a = 0 ;"
    assert task._statement(ScriptedDraws(["increment", "increment", "set"]), {"a": 10}) == "a = 0 ;"
    values = {"a": 9}
    assert task._statement(ScriptedDraws(["increment"]), values) == "a ++;" and values == {"a": 10}


def test_counting_lengths_are_uniform_before_programs_that_set_nothing_are_redrawn():
    """Official generator: n ~ randint(3, max), and a sample without a set variable is drawn again
    from the start, n included. So P(n) is proportional to P(something set in n) = 1 - (50/51)^n
    (before a set, an increment is redrawn: a statement is a set with probability 1/51)."""
    rng = np.random.default_rng(3)
    task = CountingTask(1, 3, 40)
    lengths = np.array([len(replay(task.example(rng)["context"])[0]) for _ in range(500)])
    n = np.arange(3, 41)
    p = (1 - (50 / 51) ** n) / (1 - (50 / 51) ** n).sum()
    mean, std = (n * p).sum(), math.sqrt((n ** 2 * p).sum() - (n * p).sum() ** 2)
    assert abs(lengths.mean() - mean) < 5 * std / math.sqrt(len(lengths))   # uniform: mean 21.5
    assert lengths.min() >= 3 and lengths.max() == 40
    short = CountingTask(1, 3, 4)
    assert {len(replay(short.example(rng)["context"])[0]) for _ in range(100)} == {3, 4}


def test_run_program_gives_what_print_shows_and_refuses_what_is_not_a_program():
    assert run_program("a = 0 ; pass; pass; a ++; b = 0 ; pass; a ++;", "a") == 2   # the paper's example
    assert run_program("a = 0 ; a ++; a = 0 ; a ++;", "a") == 1                      # a set resets to 0
    assert run_program("b = 0 ; a = 0 ; b ++; b ++; a ++;", "b") == 2
    for context, variable in [("a ++; a = 0 ;", "a"), ("a = 0 ;", "b"), ("a = 0 ; a -- ;", "a"),
                              ("a = 0", "a"), ("ab = 0 ;", "ab"), ("a = 0 ; print a", "a")]:
        with pytest.raises(ValueError):
            run_program(context, variable)


# ------------------------------------------------------------------ flip-flop and selective copy

@pytest.mark.parametrize("p_ignore", [0.8, 0.1])
def test_flip_flop_draws_ignores_with_p_ignore_and_writes_and_reads_with_half_the_rest(p_ignore):
    rng = np.random.default_rng(4)
    task = FlipFlop(length=50, p_ignore=p_ignore)
    middle, bits = Counter(), Counter()
    for _ in range(200):
        ids, is_target = task.sample(rng)
        words = task.words(ids)
        assert len(words) == 100 and words[0] == "w" and words[-2] == "r"
        middle.update(words[2:-2:2])
        bits.update(bit for instruction, bit in zip(words[::2], words[1::2]) if instruction != "r")
        memory = None
        for n in range(0, 100, 2):                  # a read returns the last bit written
            memory = words[n + 1] if words[n] == "w" else memory
            assert is_target[n + 1] == (words[n] == "r") and not is_target[n]
            assert words[n] != "r" or words[n + 1] == memory
    total = sum(middle.values())
    assert close(middle["i"], total, p_ignore)
    assert close(middle["w"], total, (1 - p_ignore) / 2) and close(middle["r"], total, (1 - p_ignore) / 2)
    assert close(bits["1"], sum(bits.values()), 0.5)


def test_selective_copy_draws_uniform_symbols_at_uniform_slots_and_copies_them_in_order():
    rng = np.random.default_rng(5)
    task = SelectiveCopy(n_tokens=4, n_blanks=12)
    symbols, occupied, first_two_equal, N = Counter(), np.zeros(16), 0, 1500
    for _ in range(N):
        ids, is_target = task.sample(rng)
        words = task.words(ids)
        grid = words[:16]
        assert words[16] == "|" and len(words) == 21 and grid.count(".") == 12
        copied = [w for w in grid if w != "."]
        assert words[17:] == copied and [w for w, t in zip(words, is_target) if t] == copied
        symbols.update(copied)
        occupied += np.array([w != "." for w in grid])
        first_two_equal += copied[0] == copied[1]
    assert set(symbols) == set("ABCDEFGH") and all(close(c, 4 * N, 1 / 8) for c in symbols.values())
    assert all(close(c, N, 4 / 16) for c in occupied)
    assert close(first_two_equal, N, 1 / 8)         # drawn independently, repeats allowed


def parse(*argv):
    return train.build_parser().parse_args(["cope", *argv])


def test_default_tasks_and_their_out_of_distribution_tests():
    train_task, tests = cope_experiment.task_sets(parse())
    assert tests[""] is train_task
    assert (train_task.n_vars, train_task.min_statements, train_task.max_statements) == (3, 3, 32)
    assert (tests["ood"].n_vars, tests["ood"].min_statements, tests["ood"].max_statements) == (3, 33, 64)
    train_task, tests = cope_experiment.task_sets(parse("--task", "flipflop"))
    assert (train_task.length, train_task.p_ignore) == (32, 0.8)
    assert [(tests[k].length, tests[k].p_ignore) for k in ("", "dense", "sparse")] == [(32, 0.8), (32, 0.1), (32, 0.98)]
    train_task, tests = cope_experiment.task_sets(parse("--task", "selective-copy"))
    assert [(tests[k].n_tokens, tests[k].n_blanks) for k in ("", "dense", "sparse")] == [(8, 16), (8, 8), (8, 32)]


def test_errors_count_wrong_target_tokens_and_sequences_with_any_wrong():
    import torch

    class Predicts7:                                  # predicts token 7 everywhere
        def __call__(self, inputs):
            return torch.nn.functional.one_hot(torch.full_like(inputs, 7), 10).float()

    samples = [([1, 2, 7, 7], [False, False, True, True]), ([1, 7, 5], [False, True, True]),
               ([1, 2, 3], [False, False, True])]
    token_error, sequence_error = cope_experiment.errors(Predicts7(), samples, "cpu")
    assert (token_error, sequence_error) == (2 / 5, 2 / 3)


def test_collate_shifts_targets_and_ignores_the_rest():
    inputs, targets = cope_experiment.collate_targets([([5, 6, 7], [False, False, True]), ([5, 8], [False, True])])
    assert inputs.tolist() == [[5, 6], [5, 8]]
    assert targets.tolist() == [[-100, 7], [8, -100]]


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
            args.max_statements, args.ood_statements, args.batch_size, args.lr, args.target) == \
        ("counting", "cope", 64, 2, 4, 64, 3, 32, 64, 32, 2e-3, 0.01)


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
    lr, warmup = 2e-3, 1500 // 20          # linear warmup over 5% of the steps, cosine to 0.1 x peak
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
    assert rows == {"cope": "0.012", "abs": "0.676", "rope": "—"}     # Table 3, 3 variables


def test_paper_errors_are_table_3():
    table3 = {"abs": (5.3, 67.6, 71.5), "rel": (1.1, 17.8, 22.4), "cope": (0.0, 1.2, 7.4)}
    assert cope_experiment.PAPER_ERROR == {("counting", n, pos): errors[i] for pos, errors in table3.items()
                                           for i, n in enumerate((1, 3, 5))}


def test_the_loss_is_the_cross_entropy_of_the_answer_alone(run_train, captured):
    import torch
    import torch.nn.functional as F
    run_train("cope", "--test-size", "5")
    model, loss_fn = captured[0]["model"], captured[0]["loss_fn"]
    task = CountingTask(3, 3, 10)
    rng = np.random.default_rng(6)
    samples = [task.sample(rng) for _ in range(4)]
    batch = cope_experiment.collate_targets(samples)
    with torch.no_grad():
        logits = model(batch[0])
        expected = np.mean([F.cross_entropy(logits[r, len(ids) - 2], torch.tensor(ids[-1])).item()
                            for r, (ids, _) in enumerate(samples)])
        assert math.isclose(loss_fn(model, batch).item(), expected, rel_tol=1e-5)


def test_data_file_batches_are_drawn_from_its_programs(run_train, captured, tmp_path):
    rng = np.random.default_rng(7)
    examples = [CountingTask(3, 3, 6).example(rng) for _ in range(5)]
    path = tmp_path / "count.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in examples))
    code, out, err = run_train("cope", "--test-size", "5", "--data", path)
    assert code == 0, err
    programs = [CountingTask().encode(e)[0] for e in examples]
    inputs, _ = captured[0]["next_batch"]()
    for row in inputs.tolist():                     # right-padded with 0; the longest lost its last token
        row = [t for t in row if t != 0]
        assert any(row in (ids, ids[:-1]) for ids in programs)


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
    rng = np.random.default_rng(3)
    path = tmp_path / "count.jsonl"
    lines = [{"context": "pass; c = 0 ; c ++; pass;", "question": "print c", "answer": "1"}]
    lines += [CountingTask(3, 3, 6).example(rng) for _ in range(30)]
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
        assert f"bad.jsonl:2: " in err and word in err, err


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
