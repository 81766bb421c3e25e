"""Tests for experiments/cope_tasks.py: the tasks drawn in batches on the device against the authors'
generators (counting: the official generator's rules, re-implemented here with its retry loops as the
reference), flip-flop and selective copy, the batches' targets and the official data format's checks."""
import math
import re
from collections import Counter

import numpy as np
import pytest
import torch

from experiments.cope_tasks import CountingTask, FlipFlop, SelectiveCopy, check_example, run_program, to_batch


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


def programs(task, n, seed):
    """n programs drawn in one batch, in the official format."""
    ids, _ = task.draw(n, torch.Generator().manual_seed(seed))
    return [task.decode(row) for row in ids.tolist()]


# ------------------------------------------------------------------ counting (section 4.3)

def test_counting_programs_have_the_official_format_and_answer():
    task = CountingTask(n_vars=3, min_statements=3, max_statements=40)
    ids, is_target = task.draw(200, torch.Generator().manual_seed(0))
    allowed = {"pass;"} | {f"{v} = 0 ;" for v in "abc"} | {f"{v} ++;" for v in "abc"}
    assert ids.shape == is_target.shape == (200, 4 * 40 + 3)
    for row, mask in zip(ids.tolist(), is_target.tolist()):
        example = task.decode(row)
        statements = re.findall(r"[a-z] = 0 ;|[a-z] \+\+;|pass;", example["context"])
        assert 3 <= len(statements) <= 40 and set(statements) <= allowed
        assert example["context"] == " ".join(statements)   # nothing else, single spaces
        variable = example["question"].split()[1]
        assert example["question"] == f"print {variable}"
        assert example["answer"] == str(replay(example["context"])[1][variable])
        length = row.index(0) if 0 in row else len(row)
        assert all(t == 0 for t in row[length:])             # right-padded with <pad>
        assert task.encode(example) == (row[:length], mask[:length])   # the answer alone is a target


@pytest.fixture(scope="module")
def long_programs():
    """Programs of 100-200 statements over 3 variables: enough statements for frequencies."""
    return programs(CountingTask(3, 100, 200), 300, 1)


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


def official_statement(rng, values, n_vars):
    """The official generator's statement, as its code draws it: an operation with weights SET 1,
    INCREMENT 7, DUMMY 50; an increment of a uniformly picked set variable; an operation it cannot
    make (an increment with nothing set, or of a variable at 10) is drawn again from the start."""
    while True:
        op = rng.choice(["set", "increment", "pass"], p=np.array([1, 7, 50]) / 58)
        if op == "pass":
            return "pass", None
        if op == "set":
            return "set", "abc"[rng.integers(n_vars)]
        if values:
            var = sorted(values)[rng.integers(len(values))]
            if values[var] < 10:
                return "increment", var


@pytest.mark.parametrize("values", [{}, {"a": 10}, {"a": 10, "b": 4}, {"a": 1, "b": 10, "c": 2}])
def test_counting_statement_odds_are_the_official_retry_loops(values):
    """The odds a batch draws each statement from are the frequencies of the official retry loop (at the
    cap an increment is drawn again from all three operations: it is neither replaced nor re-aimed)."""
    task, rng, n = CountingTask(n_vars=3), np.random.default_rng(8), 10000
    drawn = Counter(official_statement(rng, values, 3) for _ in range(n))
    state = torch.tensor([[values.get(v, -1) for v in "abc"]])
    odds = task.odds(state)[0] / task.odds(state)[0].sum()
    choices = [("pass", None)] + [("set", v) for v in "abc"] + [("increment", v) for v in "abc"]
    for choice, p in zip(choices, odds.tolist()):
        assert (p == 0) == (drawn[choice] == 0) and close(drawn[choice], n, p), (values, choice, drawn[choice] / n, p)


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
    highest = 0
    for example in programs(CountingTask(1, 100, 200), 150, 2):
        statements, values = replay(example["context"])
        highest = max([highest] + [max(before.values(), default=0) for _, _, before in statements])
        assert 0 <= int(example["answer"]) <= 10
    assert highest == 10


def test_counting_lengths_are_uniform_before_programs_that_set_nothing_are_redrawn():
    """Official generator: n ~ randint(3, max), and a sample without a set variable is drawn again
    from the start, n included. So P(n) is proportional to P(something set in n) = 1 - (50/51)^n
    (before a set, an increment is redrawn: a statement is a set with probability 1/51), and the
    first set is at statement k with P(k) proportional to (50/51)^(k-1), k <= n."""
    lengths, firsts = [], []
    for example in programs(CountingTask(1, 3, 40), 2000, 3):
        statements = replay(example["context"])[0]
        lengths.append(len(statements))
        firsts.append([op for op, _, _ in statements].index("set") + 1)
    lengths, firsts = np.array(lengths), np.array(firsts)
    n = np.arange(3, 41)
    p = (1 - (50 / 51) ** n) / (1 - (50 / 51) ** n).sum()
    mean, std = (n * p).sum(), math.sqrt((n ** 2 * p).sum() - (n * p).sum() ** 2)
    assert abs(lengths.mean() - mean) < 5 * std / math.sqrt(len(lengths))   # uniform: mean 21.5
    assert lengths.min() >= 3 and lengths.max() == 40
    # the first set: its mean over the programs, as P(k) says for each one's n (uniform: (n + 1) / 2)
    moments = []
    for m in lengths:
        k = np.arange(1, m + 1)
        p_k = (50 / 51) ** (k - 1) / ((50 / 51) ** (k - 1)).sum()
        moments.append((k @ p_k, (k ** 2) @ p_k - (k @ p_k) ** 2))
    mean, variance = np.mean(moments, axis=0)
    assert abs(firsts.mean() - mean) < 5 * math.sqrt(variance / len(firsts))
    short = CountingTask(1, 3, 4)
    assert {len(replay(e["context"])[0]) for e in programs(short, 100, 4)} == {3, 4}


def test_counting_draws_are_seeded():
    task, seeded = CountingTask(), lambda seed: task.draw(8, torch.Generator().manual_seed(seed))[0]
    assert torch.equal(seeded(5), seeded(5)) and not torch.equal(seeded(5), seeded(6))


def test_run_program_gives_what_print_shows_and_refuses_what_is_not_a_program():
    assert run_program("a = 0 ; pass; pass; a ++; b = 0 ; pass; a ++;", "a") == 2   # the paper's example
    assert run_program("a = 0 ; a ++; a = 0 ; a ++;", "a") == 1                      # a set resets to 0
    assert run_program("b = 0 ; a = 0 ; b ++; b ++; a ++;", "b") == 2
    for context, variable in [("a ++; a = 0 ;", "a"), ("a = 0 ;", "b"), ("a = 0 ; a -- ;", "a"),
                              ("a = 0", "a"), ("ab = 0 ;", "ab"), ("a = 0 ; print a", "a")]:
        with pytest.raises(ValueError):
            run_program(context, variable)
    assert check_example({"context": "a = 0 ; a ++;", "question": "print a", "answer": "1"})
    with pytest.raises(ValueError, match="prints 1"):
        check_example({"context": "a = 0 ; a ++;", "question": "print a", "answer": "2"})


# ------------------------------------------------------------------ flip-flop and selective copy

@pytest.mark.parametrize("p_ignore", [0.8, 0.1])
def test_flip_flop_draws_ignores_with_p_ignore_and_writes_and_reads_with_half_the_rest(p_ignore):
    task = FlipFlop(length=50, p_ignore=p_ignore)
    ids, is_target = task.draw(200, torch.Generator().manual_seed(4))
    middle, bits = Counter(), Counter()
    for row, targets in zip(ids.tolist(), is_target.tolist()):
        words = task.words(row)
        assert len(words) == 100 and words[0] == "w" and words[-2] == "r"
        middle.update(words[2:-2:2])
        bits.update(bit for instruction, bit in zip(words[::2], words[1::2]) if instruction != "r")
        memory = None
        for n in range(0, 100, 2):                  # a read returns the last bit written
            memory = words[n + 1] if words[n] == "w" else memory
            assert targets[n + 1] == (words[n] == "r") and not targets[n]
            assert words[n] != "r" or words[n + 1] == memory
    total = sum(middle.values())
    assert close(middle["i"], total, p_ignore)
    assert close(middle["w"], total, (1 - p_ignore) / 2) and close(middle["r"], total, (1 - p_ignore) / 2)
    assert close(bits["1"], sum(bits.values()), 0.5)


def test_selective_copy_draws_uniform_symbols_at_uniform_slots_and_copies_them_in_order():
    task, N = SelectiveCopy(n_tokens=4, n_blanks=12), 1500
    ids, is_target = task.draw(N, torch.Generator().manual_seed(5))
    symbols, occupied, first_two_equal = Counter(), np.zeros(16), 0
    for row, targets in zip(ids.tolist(), is_target.tolist()):
        words = task.words(row)
        grid = words[:16]
        assert words[16] == "|" and len(words) == 21 and grid.count(".") == 12
        copied = [w for w in grid if w != "."]
        assert words[17:] == copied and [w for w, t in zip(words, targets) if t] == copied
        symbols.update(copied)
        occupied += np.array([w != "." for w in grid])
        first_two_equal += copied[0] == copied[1]
    assert set(symbols) == set("ABCDEFGH") and all(close(c, 4 * N, 1 / 8) for c in symbols.values())
    assert all(close(c, N, 4 / 16) for c in occupied)
    assert close(first_two_equal, N, 1 / 8)         # drawn independently, repeats allowed


# ------------------------------------------------------------------ batches

def test_a_batch_shifts_targets_ignores_the_rest_and_is_cut_to_its_longest_row():
    ids = torch.tensor([[5, 6, 7, 0, 0], [5, 8, 0, 0, 0]])
    is_target = torch.tensor([[False, False, True, False, False], [False, True, False, False, False]])
    inputs, targets = to_batch(ids, is_target)
    assert inputs.tolist() == [[5, 6], [5, 8]]
    assert targets.tolist() == [[-100, 7], [8, -100]]
