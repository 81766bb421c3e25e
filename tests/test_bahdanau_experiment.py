"""Tests for experiments/bahdanau_experiment.py: Appendix B.2's length-sorted batches and the
`bahdanau` sub-command."""
import json

import numpy as np

from conftest import check_result, result_lines
from experiments import bahdanau_experiment, translation
from experiments.translation import PAD

TINY = ["--embed-dim", 8, "--hidden", 8, "--align-dim", 8, "--maxout", 4, "--max-len", 8,
        "--test-size", 30, "--batch-size", 8, "--eval-every", 2, "--device", "cpu"]


def test_cli_compare_prints_results_table_and_alignment(run_train, tmp_path):
    code, out, err = run_train("bahdanau", "--steps", 3, "--compare", "--out", tmp_path, *TINY)
    assert code == 0, err
    results = result_lines(out)
    assert [r["variant"] for r in results] == ["RNNsearch", "RNNencdec"]
    for r in results:
        check_result(r, "bahdanau")
        assert r["steps"] == 3 and "len 4-8" in r["metrics"]
    assert "RNNsearch alignment" in out and "| source length" in out
    saved = json.loads((tmp_path / "result-RNNencdec.json").read_text())
    assert saved["variant"] == "RNNencdec"


def test_cli_beam_and_bad_lengths(run_train):
    code, out, _ = run_train("bahdanau", "--steps", 2, "--beam", 2, *TINY)
    assert code == 0 and "beam-2 decoding" in out
    check_result(result_lines(out)[0], "bahdanau")
    code, _, err = run_train("bahdanau", "--min-len", 9, *TINY)
    assert code == 2 and err.count("\n") == 1


def test_length_sorted_batches_cut_one_sorted_pool():
    batches = bahdanau_experiment.length_sorted_batches(translation.ToyTranslation(4, 40), 8,
                                                        np.random.default_rng(0), pool=5)
    pool = [next(batches) for _ in range(5)]
    spans = sorted(((src != PAD).sum(1).min().item(), (src != PAD).sum(1).max().item()) for src, _ in pool)
    assert all(hi <= next_lo for (_, hi), (next_lo, _) in zip(spans, spans[1:]))  # no overlap
    assert spans[0][0] < spans[-1][1] and all(src.size(0) == 8 for src, _ in pool)
