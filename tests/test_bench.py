"""bench.py: how it times (runs per block, their order, the spread it reports) and its command line (bad
input is one line and exit code 2). Its figures are measured, never asserted: no test here times anything."""
import re
import time
import types

import pytest

import bench


def options(repeats=25, seconds_per_cell=2.0):
    return types.SimpleNamespace(repeats=repeats, seconds_per_cell=seconds_per_cell, device=bench.torch.device("cpu"),
                                 clock=time.perf_counter)


def test_each_block_gets_its_own_number_of_runs_from_its_own_warm_up():
    # 2 s per figure: a 10 ms block fits 200 runs (capped at --repeats), a 0.5 s one 4 (raised to the floor)
    runs = bench.plan_repeats({"fast": 0.01, "middle": 0.2, "slow": 0.5}, options())
    assert runs == {"fast": 25, "middle": 10, "slow": bench.MIN_REPEATS}
    # a slow neighbour no longer pulls every block down to the floor (the sum of warm-ups did)
    assert bench.plan_repeats({"fast": 0.01, "slow": 10.0}, options())["fast"] == 25
    assert bench.plan_repeats({"fast": 0.01}, options(repeats=3)) == {"fast": 3}   # --repeats below the floor


def test_schedule_interleaves_every_block_its_own_number_of_times_in_varying_orders():
    repeats = {"a": 12, "b": 12, "c": 12, "d": 6, "e": 7}
    rounds = bench.schedule(repeats)
    assert len(rounds) == 12
    assert {name: sum(names.count(name) for names in rounds) for name in repeats} == repeats
    assert all(len(set(names)) == len(names) for names in rounds)        # at most once per round
    # the block with fewer runs is spread over the whole measurement, not bunched at the start
    assert [i for i, names in enumerate(rounds) if "d" in names] == [0, 2, 4, 6, 8, 10]
    full = [tuple(n for n in names if n in "abc") for names in rounds]
    assert len(set(full)) > 3                                        # the order changes between rounds
    assert {names[0] for names in full} == {"a", "b", "c"}           # and no block always runs first
    assert bench.schedule(repeats) == rounds                         # a fixed seed: the same every time


def test_time_in_turns_runs_the_schedule_and_reports_min_median_max_per_block():
    calls = []
    steps = {name: (lambda name=name: calls.append(name), first) for name, first in (("x", 0.1), ("y", 1.0))}
    timings = bench.time_in_turns(steps, options(repeats=20))
    expected = [name for names in bench.schedule({"x": 20, "y": bench.MIN_REPEATS}) for name in names]
    assert calls == expected
    for name, n in (("x", 20), ("y", bench.MIN_REPEATS)):
        t = timings[name]
        assert t.n == n and 0 <= t.min <= t.median <= t.max


def test_timing_is_min_median_max_and_count():
    assert bench.timing([3.0, 1.0, 2.0, 10.0]) == bench.Timing(1.0, 2.5, 10.0, 4)
    assert bench.spread(bench.Timing(0.001, 0.0015, 0.02, 5)) == "1 / 1.5 / 20"


def test_a_tiny_run_prints_every_table_with_spreads_and_the_decoder_apart(capsys, monkeypatch):
    monkeypatch.setattr(bench, "DECODER_MAX_T", 8)    # the decoder is timed up to T = 8 only
    bench.main(["--quick", "--sizes", "8", "16", "--repeats", "1", "--seconds-per-cell", "0.001"])
    out = capsys.readouterr().out
    spread = r"[\d.]+ / [\d.]+ / [\d.]+"
    attention = out[:out.index("Memory, MiB")]
    for label, _, _ in bench.BLOCKS.values():
        assert re.search(re.escape(label) + r" \| " + spread, attention), label
    assert "bahdanau" not in attention                               # not among the parallel blocks
    decoder = out[out.index("### Bahdanau's decoder"):out.index("### Targets")]
    assert re.search(r"\| 8 \| " + spread + r" \| [\d.]+ \| [\d.]+ \| \d+x \|", decoder)
    assert "| 16 | - | - |" in decoder and "not timed beyond T = 8" in decoder
    assert re.search(r"\| 32 \| 40 \| " + spread + r" \| " + spread + r" \| ", out)   # the training step
    assert re.search(r"CoPE <= 1.5x .* \| [\d.]+x \([\d.]+x\) at T=8, [\d.]+x \([\d.]+x\) at T=16 \|", out)
    assert "`python bench.py --quick --sizes 8 16" in out


def test_cpu_clock_is_the_process_time_of_one_thread():
    assert bench.parse_args(["--clock", "cpu", "--threads", "1", "--device", "cpu"]).clock is time.process_time
    assert bench.parse_args(["--device", "cpu"]).clock is time.perf_counter


@pytest.mark.parametrize("argv, complaint", [
    (["--clock", "cpu"], "--clock cpu"),                   # two threads' CPU time would add up
    (["--clock", "cpu", "--threads", "2"], "--clock cpu"),
    (["--sizes", "1"], "--sizes"),
    (["--sizes", "4", "99999999"], "--sizes"),
    (["--repeats", "0"], "--repeats"),
    (["--seconds-per-cell", "nan"], "--seconds-per-cell"),
    (["--seconds-per-cell", "1e9"], "--seconds-per-cell"),
    (["--max-gb", "-1"], "--max-gb"),
    (["--threads", "x"], "--threads"),
    (["--device", "tpu"], "--device"),
])
def test_bad_input_is_one_line_and_exit_code_2(capsys, argv, complaint):
    with pytest.raises(SystemExit) as stop:
        bench.main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2
    assert len(err.strip().splitlines()) == 1 and complaint in err and "Traceback" not in err
