"""experiments/hopfield_experiment.py: the MIL bags with rare witnesses, the retrieval queries and the
two experiments of `python train.py hopfield` (--task mil, --task retrieval) on the command line."""
import itertools
import json
import math
import types

import numpy as np
import pytest
import torch

import train
from conftest import HAS_MATPLOTLIB, check_result, result_lines
from experiments import hopfield_experiment as hx


def strict_json_result(out):
    """The one result line, parsed as strict JSON (NaN or Infinity raise)."""
    [line] = [line for line in out.splitlines() if line.startswith("result: ")]
    def refuse(constant):
        raise ValueError(f"{constant} in the result line")
    return json.loads(line[len("result: "):], parse_constant=refuse)


# ---------------------------------------------------------------------------------------------
# The witness bags: the distributions the generator defines
# ---------------------------------------------------------------------------------------------

def test_witness_bags_are_balanced_with_labels_in_random_order():
    task = hx.WitnessBags(dim=2, bag_size=3, witnesses=1)
    _, labels, _ = task.batch(2000, np.random.default_rng(0))
    assert labels.sum() == 1000                                     # exactly half positive
    same_as_next = (labels[1:] == labels[:-1]).float().mean().item()
    assert abs(same_as_next - 0.5) < 5 * 0.5 / math.sqrt(1999)       # neither alternating nor sorted


def test_positive_bags_hold_exactly_k_distinct_witnesses_at_uniform_positions_negatives_none():
    task = hx.WitnessBags(dim=2, bag_size=20, witnesses=3)
    bags, labels, witness = task.batch(4000, np.random.default_rng(1))
    assert (witness.sum(1) == 3 * labels).all()
    per_position = witness.sum(0).float()                             # expected 2000 * 3 / 20 = 300
    assert (per_position - 300).abs().max() < 5 * math.sqrt(300)


def test_background_instances_are_standard_normal_and_witnesses_motif_plus_noise_times_normal():
    task = hx.WitnessBags(dim=16, bag_size=50, witnesses=4, noise=0.3)
    bags, labels, witness = task.batch(400, np.random.default_rng(2))
    background = bags[~witness].double()
    n = background.numel()
    assert abs(background.mean()) < 5 / math.sqrt(n) and abs(background.std() - 1) < 5 / math.sqrt(2 * n)
    z = ((bags[witness].double() - torch.tensor(task.motif)) / 0.3)    # should be N(0, 1)
    n = z.numel()
    assert abs(z.mean()) < 5 / math.sqrt(n) and abs(z.std() - 1) < 5 / math.sqrt(2 * n)
    # in every positive bag the witnesses are the 4 instances nearest to the motif
    distance = (bags - torch.tensor(task.motif, dtype=torch.float32)).norm(dim=-1)
    nearest = distance.argsort(dim=1)[:, :4]
    assert witness[labels == 1].gather(1, nearest[labels == 1]).all()


def test_the_motif_is_standard_normal_fixed_by_its_seed_from_a_stream_of_its_own():
    motifs = np.array([hx.WitnessBags(dim=16, motif_seed=s).motif for s in range(200)])
    n = motifs.size
    assert abs(motifs.mean()) < 5 / math.sqrt(n) and abs(motifs.std() - 1) < 5 / math.sqrt(2 * n)
    assert np.array_equal(hx.WitnessBags(dim=16, motif_seed=3).motif, motifs[3])
    for seed in range(3):   # the data stream of seed s never starts with the motif
        assert not np.allclose(np.random.default_rng(seed).standard_normal(16), motifs[seed])
    task = hx.WitnessBags(dim=4, bag_size=5)
    first, again = task.batch(6, np.random.default_rng(0)), task.batch(6, np.random.default_rng(0))
    assert all(torch.equal(a, b) for a, b in zip(first, again))


def test_witness_bags_refuse_impossible_settings():
    with pytest.raises(ValueError, match="witnesses"):
        hx.WitnessBags(bag_size=3, witnesses=4)
    with pytest.raises(ValueError, match="noise"):
        hx.WitnessBags(noise=0.0)


@pytest.mark.parametrize("witnesses", [1, 2, 3])
def test_bayes_log_odds_average_the_likelihood_ratio_over_witness_positions(witnesses):
    task = hx.WitnessBags(dim=4, bag_size=6, witnesses=witnesses, noise=0.7)
    bags, _, _ = task.batch(3, np.random.default_rng(1))
    x = bags.double()
    witness = torch.distributions.Normal(torch.tensor(task.motif), 0.7).log_prob(x).sum(-1)
    background = torch.distributions.Normal(0.0, 1.0).log_prob(x).sum(-1)
    ratio = torch.exp(witness - background)                       # [3, 6]
    subsets = list(itertools.combinations(range(6), witnesses))
    brute = torch.log(sum(math.prod(ratio[:, i] for i in subset) for subset in subsets) / len(subsets))
    assert torch.allclose(task.bayes_log_odds(bags), brute)


# ---------------------------------------------------------------------------------------------
# The held-out scores
# ---------------------------------------------------------------------------------------------

class FixedModel(torch.nn.Module):
    """Returns the logits and association it was given, a slice per batch."""
    def __init__(self, logits, attention):
        super().__init__()
        self.logits, self.attention, self.at = logits, attention, 0

    def forward(self, bags):
        rows = slice(self.at, self.at + len(bags))
        self.at += len(bags)
        return self.logits[rows], None if self.attention is None else self.attention[rows]


def test_mil_scores_by_hand_accuracy_loss_and_attention_on_witnesses_of_positive_bags():
    labels = torch.tensor([1.0, 0.0, 1.0, 0.0])
    logits = torch.tensor([2.0, -1.0, -0.5, 0.5])                     # right, right, wrong, wrong
    witness = torch.tensor([[1, 0, 0], [0, 0, 0], [0, 1, 1], [0, 0, 0]], dtype=torch.bool)
    attention = torch.tensor([[0.6, 0.3, 0.1], [0.9, 0.1, 0.0], [0.2, 0.3, 0.5], [0.2, 0.2, 0.6]])
    bags = torch.zeros(4, 3, 1)
    scores = hx.mil_scores(FixedModel(logits, attention), (bags, labels, witness), batch_size=3)
    loss = -np.mean([np.log(1 / (1 + np.exp(-2.0))), np.log(1 - 1 / (1 + np.exp(1.0))),
                     np.log(1 / (1 + np.exp(0.5))), np.log(1 - 1 / (1 + np.exp(-0.5)))])
    assert scores["accuracy"] == 0.5 and abs(scores["test_loss"] - loss) < 1e-6
    assert scores["witness_attention"] == round((0.6 + 0.8) / 2, 4)  # negatives' attention left out
    mean_pooling = hx.mil_scores(FixedModel(logits, None), (bags, labels, witness))
    assert "witness_attention" not in mean_pooling


def test_mil_scores_without_a_positive_bag_or_with_a_diverged_model_give_none_not_nan():
    witness = torch.zeros(1, 3, dtype=torch.bool)
    scores = hx.mil_scores(FixedModel(torch.tensor([-1.0]), torch.full((1, 3), 1 / 3)),
                           (torch.zeros(1, 3, 1), torch.zeros(1), witness))
    assert scores["witness_attention"] is None                      # a mean over no bag was NaN
    nan = torch.tensor([float("nan")])
    scores = hx.mil_scores(FixedModel(nan, torch.full((1, 3), float("nan"))),
                           (torch.zeros(1, 3, 1), torch.ones(1), torch.ones(1, 3, dtype=torch.bool)))
    assert scores["test_loss"] is None and scores["witness_attention"] is None


# ---------------------------------------------------------------------------------------------
# The retrieval task: random +-1 patterns and corrupted queries
# ---------------------------------------------------------------------------------------------

def test_stored_patterns_are_plus_or_minus_one_with_probability_one_half():
    X = hx.random_patterns(200, 64, np.random.default_rng(0))
    assert X.dtype == torch.float32 and set(X.unique().tolist()) == {-1.0, 1.0}
    assert abs((X == 1).float().mean() - 0.5) < 5 * 0.5 / math.sqrt(X.numel())


@pytest.mark.parametrize("fraction,unknown", [(0.5, 5), (0.25, 2), (0.3, 3), (0.99, 10)])
def test_mask_queries_set_the_last_round_fraction_d_bits_to_zero(fraction, unknown):
    target = hx.random_patterns(4, 10, np.random.default_rng(0))
    query = hx.corrupt(target, "mask", fraction, np.random.default_rng(1))
    assert (query[:, 10 - unknown:] == 0).all()
    assert torch.equal(query[:, :10 - unknown], target[:, :10 - unknown])
    assert not (target == 0).any()                                   # the target is left as it was


def test_flip_queries_negate_each_bit_with_probability_fraction():
    target = hx.random_patterns(100, 64, np.random.default_rng(0))
    query = hx.corrupt(target, "flip", 0.2, np.random.default_rng(1))
    assert torch.equal(query.abs(), target.abs())                    # every bit kept or negated
    rate, n = (query != target).float().mean().item(), target.numel()
    assert abs(rate - 0.2) < 5 * math.sqrt(0.2 * 0.8 / n)


# ---------------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------------

def test_flag_defaults_are_the_documented_ones():
    args = train.build_parser().parse_args(["hopfield"])
    assert (args.task, args.steps, args.batch_size, args.lr, args.eval_every) == ("mil", 2000, 32, 1e-3, 20)
    assert (args.dim, args.beta, args.bag_size, args.witnesses, args.noise) == (None, None, 200, 2, 0.5)
    assert (args.d_model, args.heads, args.queries, args.update_steps) == (32, 1, 1, 1)
    assert (args.test_size, args.target) == (1000, 0.95)
    assert (args.max_patterns, args.probes, args.query, args.corrupt) == (16384, 100, "mask", 0.5)


def test_short_mil_run_lowers_the_loss_and_attends_to_the_witnesses(run_train):
    code, out, _ = run_train("hopfield", "--steps", 60, "--eval-every", 10, "--bag-size", 40,
                             "--test-size", 200, "--target", 2, "--device", "cpu")
    assert code == 0
    result = strict_json_result(out)
    check_result(result, "hopfield")
    assert "instances of width 16" in out and "witness rate 5.00%" in out   # default --dim of MIL: 16
    held_out = [float(line.split("test_loss ")[1].split()[0]) for line in out.splitlines()
                if "test_loss" in line and not line.startswith("result")]
    assert len(held_out) == 6 and held_out[-1] < 0.8 * held_out[0]
    assert result["metrics"]["witness_attention"] > 10 * 2 / 40       # 10x the witness rate of 5%


def test_same_seed_same_result(run_train):
    argv = ("hopfield", "--steps", 10, "--eval-every", 5, "--bag-size", 20, "--test-size", 50,
            "--seed", 3, "--device", "cpu")
    first, second = (result_lines(run_train(*argv)[1])[0] for _ in range(2))
    assert first["metrics"] == second["metrics"] and first["steps"] == second["steps"]


def test_compare_prints_one_result_per_pooling_and_a_table_at_equal_size(run_train):
    code, out, _ = run_train("hopfield", "--compare", "--steps", 5, "--eval-every", 5, "--bag-size", 21,
                             "--test-size", 20, "--heads", 2, "--queries", 3, "--device", "cpu")
    assert code == 0
    results = result_lines(out)
    assert [r["variant"] for r in results] == ["hopfield", "mean", "max"]
    sizes = [r["metrics"]["parameters"] for r in results]
    # by hand, width 32, instances of 16, 3 queries: embedding 16*32+32 + 32*32+32 = 1600; pooling:
    # queries 3*32 + 3 LayerNorms 3*64 + W_Q, W_K, W_V 3*(32*32+32) + W_O 32*32+32 = 4512; head
    # 96*32+32 + 32+1 = 3137
    assert sizes[0] == 1600 + 4512 + 3137
    assert max(sizes) - min(sizes) <= 0.05 * sizes[0]
    assert out.strip().splitlines()[-1].startswith("| max ")


def test_test_set_of_one_bag_gives_a_strict_json_result(run_train):
    code, out, _ = run_train("hopfield", "--test-size", 1, "--steps", 2, "--bag-size", 20, "--device", "cpu")
    assert code == 0
    assert strict_json_result(out)["metrics"]["witness_attention"] is None   # no positive bag


@pytest.mark.parametrize("compare", [[], ["--compare"]])
def test_diverged_run_ends_with_exit_0_and_a_strict_json_result(run_train, compare, tmp_path):
    code, out, err = run_train("hopfield", "--lr", 1e30, "--steps", 20, "--eval-every", 10, *compare,
                               "--bag-size", 21, "--test-size", 10, "--out", tmp_path, "--device", "cpu")
    assert code == 0 and "Traceback" not in out + err
    lines = [line for line in out.splitlines() if line.startswith("result: ")]
    for line in lines:
        strict_json_result(line)
    assert len(lines) == (3 if compare else 1)
    assert "not finite (the run diverged)" in out                    # the picture says so, no crash


def test_retrieval_pictures_skip_non_finite_states_without_a_crash(capsys):
    args = types.SimpleNamespace(out=None)
    example = [torch.ones(2, 4), torch.zeros(2, 4), torch.full((2, 4), float("nan")), torch.ones(2, 4)]
    hx.show_retrievals(args, example, 4, 2)
    assert "not finite, no picture" in capsys.readouterr().out


def test_retrieval_table_and_result(run_train, tmp_path):
    code, out, _ = run_train("hopfield", "--task", "retrieval", "--dim", 32, "--max-patterns", 64,
                             "--probes", 10, "--corrupt", 0.25, "--out", tmp_path, "--device", "cpu")
    assert code == 0
    result = strict_json_result(out)
    check_result(result, "hopfield")
    metrics = result["metrics"]
    sizes = [2 ** k for k in range(1, 7)]                             # N doubles from 2
    assert [k for k in metrics if k.startswith("N=")] == [f"N={N}" for N in sizes]
    for name in ("classical", "dense", "modern_one_update", "modern"):   # largest N with >= 99%
        assert metrics[f"capacity_{name}"] == max(N for N in sizes if metrics[f"N={N}"][name] >= 0.99)
    assert 0.5 < metrics["N=8"]["classical"] < 0.99                  # so a looser rule would show
    assert metrics["capacity_modern"] == 64 and metrics["N=64"]["classical"] == 0 and result["solved"]
    assert metrics["capacity_classical"] < 0.14 * 32 * 2               # near 0.14 d, far below d
    assert "d = 32, beta = 1.0, queries: mask 25%" in out             # beta 1 by default, not 1/sqrt(d)
    assert "| N " in out and (tmp_path / "result.json").exists()
    assert "pattern 0 of N = 32 stored, d = 32" in out               # the terminal picture, always
    if HAS_MATPLOTLIB:
        assert (tmp_path / "retrievals.png").exists()


def test_retrieval_default_dimension_is_64_probes_count_queries_and_flip_queries_are_used(run_train):
    code, out, _ = run_train("hopfield", "--task", "retrieval", "--max-patterns", 4, "--probes", 3,
                             "--query", "flip", "--device", "cpu")
    result = strict_json_result(out)
    assert code == 0 and "d = 64, beta = 1.0" in out
    assert not result["solved"]               # half the bits flipped: no network can tell the pattern
    assert result["steps"] == 2 * 2 + 3     # N = 2: two memories of 2 patterns reach 3 probes; N = 4: 3


@pytest.mark.parametrize("argv,word", [
    (["--heads", "5"], "heads"), (["--heads", "100"], "--heads"), (["--noise", "0"], "--noise"),
    (["--noise", "nan"], "--noise"), (["--noise", "inf"], "--noise"), (["--noise", "-1"], "--noise"),
    (["--beta", "nan"], "--beta"), (["--beta", "1e30"], "--beta"), (["--beta", "0"], "--beta"),
    (["--dim", "0"], "--dim"), (["--dim", "100000"], "--dim"), (["--dim", "x"], "--dim"),
    (["--bag-size", "0"], "--bag-size"), (["--bag-size", "1000000000"], "--bag-size"),
    (["--witnesses", "0"], "--witnesses"), (["--witnesses", "30", "--bag-size", "20"], "--witnesses"),
    (["--d-model", "1"], "--d-model"), (["--d-model", "100000"], "--d-model"),
    (["--queries", "0"], "--queries"), (["--queries", "1000"], "--queries"),
    (["--update-steps", "0"], "--update-steps"), (["--update-steps", "1000"], "--update-steps"),
    (["--test-size", "0"], "--test-size"), (["--test-size", "1000000000"], "--test-size"),
    (["--target", "nan"], "--target"), (["--target", "-1"], "--target"),
    (["--bag-size", "100000", "--test-size", "1000"], "--test-size"),
    (["--bag-size", "100000", "--batch-size", "1000", "--test-size", "1"], "training batch"),
    (["--d-model", "4096", "--queries", "16", "--bag-size", "1", "--witnesses", "1", "--test-size", "1",
      "--batch-size", "1"],
     "parameters"),
    (["--task", "retrieval", "--corrupt", "1.5"], "--corrupt"),
    (["--task", "retrieval", "--corrupt", "1"], "--corrupt"), (["--task", "retrieval", "--corrupt", "0"], "--corrupt"),
    (["--task", "retrieval", "--corrupt", "nan"], "--corrupt"),
    (["--task", "retrieval", "--max-patterns", "1"], "--max-patterns"),
    (["--task", "retrieval", "--max-patterns", "1000000000"], "--max-patterns"),
    (["--task", "retrieval", "--max-patterns", "1048576"], "--max-patterns"),
    (["--task", "retrieval", "--probes", "1000000000"], "--probes"),
    (["--task", "retrieval", "--probes", "0"], "--probes"),
    (["--task", "retrieval", "--dim", "4096", "--max-patterns", "65536"], "--max-patterns"),
    (["--task", "nope"], "--task"), (["--query", "nope"], "--query")])
def test_bad_input_is_one_line_and_exit_code_2(run_train, argv, word):
    code, out, err = run_train("hopfield", *argv, "--steps", 1, "--device", "cpu")
    assert code == 2 and err.count("\n") == 1 and "error" in err and word in err
    assert "Traceback" not in out + err and "result:" not in out
