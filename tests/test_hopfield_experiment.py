"""experiments/hopfield_experiment.py: the MIL bags with rare witnesses and the two experiments of
`python train.py hopfield` (--task mil, --task retrieval) on the command line."""
import itertools

import numpy as np
import pytest
import torch

from conftest import HAS_MATPLOTLIB, check_result, result_lines
from experiments import hopfield_experiment


def test_witness_bags_are_balanced_and_hide_witnesses_only_in_positive_bags():
    task = hopfield_experiment.WitnessBags(dim=16, bag_size=50, witnesses=3)
    bags, labels, witness = task.batch(40, np.random.default_rng(0))
    assert bags.shape == (40, 50, 16) and labels.sum() == 20
    assert (witness.sum(1) == 3 * labels).all()
    # in every positive bag the witnesses are the 3 instances nearest to the motif
    distance = (bags - torch.tensor(task.motif, dtype=torch.float32)).norm(dim=-1)
    nearest = distance.argsort(dim=1)[:, :3]
    assert witness[labels == 1].gather(1, nearest[labels == 1]).all()
    again = task.batch(40, np.random.default_rng(0))
    assert torch.equal(again[0], bags)


def test_bayes_log_odds_average_the_likelihood_ratio_over_witness_positions():
    task = hopfield_experiment.WitnessBags(dim=4, bag_size=6, witnesses=2, noise=0.7)
    bags, _, _ = task.batch(3, np.random.default_rng(1))
    x = bags.double()
    witness = torch.distributions.Normal(torch.tensor(task.motif), 0.7).log_prob(x).sum(-1)
    background = torch.distributions.Normal(0.0, 1.0).log_prob(x).sum(-1)
    ratio = torch.exp(witness - background)                       # [3, 6]
    pairs = list(itertools.combinations(range(6), 2))
    brute = torch.log(sum(ratio[:, i] * ratio[:, j] for i, j in pairs) / len(pairs))
    assert torch.allclose(task.bayes_log_odds(bags), brute)


def test_short_mil_run_lowers_the_loss(run_train):
    code, out, _ = run_train("hopfield", "--steps", 60, "--eval-every", 10, "--bag-size", 40,
                             "--test-size", 200, "--target", 2, "--device", "cpu")
    assert code == 0
    [result] = result_lines(out)
    check_result(result, "hopfield")
    held_out = [float(line.split("test_loss ")[1].split()[0]) for line in out.splitlines()
                if "test_loss" in line and not line.startswith("result")]
    assert len(held_out) == 6 and held_out[-1] < 0.8 * held_out[0]
    assert 0 <= result["metrics"]["witness_attention"] <= 1


def test_same_seed_same_result(run_train):
    argv = ("hopfield", "--steps", 10, "--eval-every", 5, "--bag-size", 20, "--test-size", 50,
            "--seed", 3, "--device", "cpu")
    first, second = (result_lines(run_train(*argv)[1])[0] for _ in range(2))
    assert first["metrics"] == second["metrics"] and first["steps"] == second["steps"]


def test_compare_prints_one_result_per_pooling_and_a_table(run_train):
    code, out, _ = run_train("hopfield", "--compare", "--steps", 5, "--eval-every", 5, "--bag-size", 20,
                             "--test-size", 20, "--device", "cpu")
    assert code == 0
    assert [r["variant"] for r in result_lines(out)] == ["hopfield", "mean", "max"]
    assert out.strip().splitlines()[-1].startswith("| max ")


def test_retrieval_table_and_result(run_train, tmp_path):
    code, out, _ = run_train("hopfield", "--task", "retrieval", "--dim", 32, "--max-patterns", 64,
                             "--probes", 10, "--out", tmp_path, "--device", "cpu")
    assert code == 0
    [result] = result_lines(out)
    check_result(result, "hopfield")
    assert result["metrics"]["capacity_modern"] == 64 and result["metrics"]["N=64"]["classical"] == 0
    assert "| N " in out and (tmp_path / "result.json").exists()
    assert "pattern 0 of N = 32 stored, d = 32" in out               # the terminal picture, always
    if HAS_MATPLOTLIB:
        assert (tmp_path / "retrievals.png").exists()


@pytest.mark.parametrize("argv", [["--heads", "5"], ["--task", "retrieval", "--corrupt", "1.5"],
                                  ["--task", "retrieval", "--max-patterns", "1"], ["--noise", "0"]])
def test_bad_input_is_one_line_and_exit_code_2(run_train, argv):
    code, out, err = run_train("hopfield", *argv, "--steps", 1, "--device", "cpu")
    assert code == 2 and err.count("\n") == 1 and "error" in err
