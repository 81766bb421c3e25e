"""The MemN2N experiment: the paper's training settings and schedule, --data files and their bad
lines, --compare's columns, and the command line."""
import json
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import memn2n
import train
from conftest import HAS_MATPLOTLIB, check_result, result_lines
from experiments import babi, memn2n_experiment as E

# The bAbI world, written out here (papers.md; the generator's own tuples are not trusted)
GOOD = "1 Mary moved to the bathroom.\n2 John went to the hallway.\n3 Where is Mary? \tbathroom\t1\n"
BAD_FILES = {  # name: (test file text, the line number the message must name, a word of the message)
    "empty question": (GOOD + "4 \tbathroom\t1\n", 4, "question<TAB>"),
    "empty answer": (GOOD + "4 Where is John? \t\t2\n", 4, "question<TAB>"),
    "two-word answer": (GOOD + "4 Where is John? \tthe hallway\t2\n", 4, "one-word answer"),
    "no supporting id": (GOOD + "4 Where is John? \thallway\t\n", 4, "supporting ids"),
    "opens with a question": (GOOD + "1 Where is John? \thallway\t1\n", 4, "opens with a question"),
    "support is the question itself": (GOOD + "4 Where is John? \thallway\t4\n", 4, "earlier statement"),
    "support is a question": (GOOD + "4 Where is John? \thallway\t3\n", 4, "earlier statement"),
    "support id 0": (GOOD + "4 Where is John? \thallway\t0\n", 4, "earlier statement"),
    "support not a number": (GOOD + "4 Where is John? \thallway\tx\n", 4, "supporting ids"),
    "id does not continue": (GOOD + "5 John went to the office.\n", 4, "does not continue"),
    "a file without id 1": ("2 John went to the office.\n" + GOOD, 1, "does not continue"),
    "opens the file with a question": ("1 Where is John? \thallway\t1\n", 1, "opens with a question"),
    "not ID text": ("Mary moved to the bathroom.\n" + GOOD, 1, "ID text"),
    "id without text": (GOOD + "4\n", 4, "ID text"),
    "empty line": (GOOD + "\n" + GOOD, 4, "ID text"),
    "a 1 MB line": (GOOD + "4 Mary went to the " + "x" * 1_000_000 + ".\n", 4, "characters"),
    "60 words": (GOOD + "4 " + "Mary " * 60 + ".\n", 4, "words"),
    "1001-line story": ("".join(f"{i} Mary went to the office.\n" for i in range(1, 1002)), 1001, "longer than"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_a_bad_data_file_is_one_line_naming_its_line(run_train, tmp_path, name):
    text, line, word = BAD_FILES[name]
    (tmp_path / "qa1_single-supporting-fact_train.txt").write_text(GOOD * 12)
    (tmp_path / "qa1_single-supporting-fact_test.txt").write_text(text)
    code, out, err = run_train("memn2n", "--data", tmp_path, "--task", 1, "--epochs", 1, "--device", "cpu")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert f"qa1_single-supporting-fact_test.txt:{line}: " in err and word in err, err


def write_babi_files(folder, task, train_size=50, test_size=20):
    """Files in the official format, qaN_*_train.txt / _test.txt, of generated questions."""
    for split, seed, n in (("train", 1, train_size), ("test", 2, test_size)):
        stories = babi.generate(task, n, np.random.default_rng(seed))
        (folder / f"qa{task}_{babi.TASKS[task]}_{split}.txt").write_text(babi.write(stories))


def test_data_dir_trains_on_real_format_files_and_missing_ones_are_one_line(run_train, tmp_path):
    write_babi_files(tmp_path, 2)
    code, out, err = run_train("memn2n", "--data", tmp_path, "--epochs", 1, "--ls-epochs", 1, "--device", "cpu")
    assert code == 0, err
    assert result_lines(out)[0]["metrics"]["training_questions"] == 45
    (tmp_path / "qa1_x_train.txt").write_text(GOOD)
    (tmp_path / "qa1_x_test.txt").write_text(GOOD)
    for argv, word in ((["--data", tmp_path / "missing"], "missing"), (["--data", tmp_path, "--task", 3], "qa3_"),
                       (["--data", tmp_path, "--task", 1], "at least 10")):
        code, out, err = run_train("memn2n", *argv, "--epochs", 1)
        assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err and word in err


@pytest.mark.parametrize("flag,value", [
    ("--hops", 0), ("--hops", 21), ("--hops", 50), ("--dim", 0), ("--dim", 5000), ("--memory-size", 0),
    ("--memory-size", 201), ("--train-size", 9), ("--train-size", 100_001), ("--test-size", 0),
    ("--test-size", 100_001), ("--epochs", 0), ("--epochs", 1001), ("--ls-epochs", 0),
    ("--random-noise", -0.1), ("--random-noise", 1.5), ("--random-noise", "nan"), ("--target-error", 2),
    ("--target-error", -0.5), ("--target-error", "nan"), ("--task", 4), ("--task", 0), ("--task", "1,1"),
    ("--task", "1,4"), ("--task", "1,"), ("--task", ""), ("--task", "all,2"), ("--task", "1;3"), ("--hops", "x"),
    ("--restarts", 0), ("--restarts", 101)])
def test_a_bad_flag_is_one_line_and_exit_2(run_train, flag, value):
    tiny = ["--train-size", 20, "--test-size", 5, "--epochs", 1, "--ls-epochs", 1]  # a wrong "yes" ends soon
    code, out, err = run_train("memn2n", *tiny, flag, value, "--device", "cpu")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err and flag in err


def test_joint_data_pools_the_tasks_and_validates_on_a_random_tenth_of_the_pool():
    """config_babi_joint.m: a random 10% of all tasks' training questions (one task: its last 10%)."""
    args = types.SimpleNamespace(data=None, seed=4, test_size=30, memory_size=50, device="cpu")
    examples, data, vocab = E.memn2n_data(args, [3, 1], 200)
    generated = {t: babi.to_examples(babi.generate(t, 200, np.random.default_rng(4))) for t in (1, 3)}
    tests = {t: babi.to_examples(babi.generate(t, 30, np.random.default_rng(train.TEST_SEED))) for t in (1, 3)}
    key = lambda e: (tuple(map(tuple, e.memory)), tuple(e.question), e.answer)
    pool = sorted(map(key, generated[3] + generated[1]))
    assert len(examples["val"]) == 40 and sorted(map(key, examples["train"] + examples["val"])) == pool
    tails = sorted(map(key, generated[3][180:] + generated[1][180:]))
    assert sorted(map(key, examples["val"])) != tails  # not each task's last tenth
    assert E.memn2n_data(args, [3, 1], 200)[0]["val"] == examples["val"]  # the same under the same --seed
    assert E.memn2n_data(types.SimpleNamespace(**{**vars(args), "seed": 5}), [3, 1], 200)[0]["val"] != examples["val"]
    assert examples["test"] == {3: tests[3], 1: tests[1]} and list(data["test"]) == [3, 1]
    assert vocab == babi.vocabulary(*generated.values(), *tests.values())  # one vocabulary for all
    for split, answers in (("train", data["train"][2]), ("val", data["val"][2]), ("test", data["test"][1][2])):
        expected = examples[split][1] if split == "test" else examples[split]
        assert [vocab[i] for i in answers] == [e.answer for e in expected], split


def test_the_task_flag_takes_one_task_all_or_a_list_in_its_order():
    assert [E.memn2n_tasks(text) for text in ("2", "all", "1,3", "3, 1")] == [[2], [1, 2, 3], [1, 3], [3, 1]]


def test_joint_training_is_one_model_on_the_union_and_a_result_line_per_task(run_train, loops):
    code, out, err = run_train("memn2n", "--task", "all", "--train-size", 100, "--test-size", 10, "--device", "cpu")
    assert code == 0, err
    [call] = loops  # one model for the three tasks
    assert "270 training / 30 validation / 30 test questions" in out
    results = result_lines(out)
    assert [(r["task"], r["variant"], r["metrics"]["training_questions"]) for r in results] == [
        (f"babi-task{t}", "memn2n", 270) for t in (1, 2, 3)]
    args = types.SimpleNamespace(data=None, seed=0, test_size=10, memory_size=50, device="cpu")
    _, data, _ = E.memn2n_data(args, [1, 2, 3], 100)
    with torch.no_grad():  # each line holds its own task's test loss and error
        scores = [[round(x, 4) for x in E.memn2n_scores(call.model.eval(), data["test"][t])] for t in (1, 2, 3)]
    assert [[r["metrics"]["test_loss"], r["metrics"]["test_error"]] for r in results] == scores
    assert len({loss for loss, _ in scores}) == 3
    table = out.strip().splitlines()[-8:-3]
    assert "3 hops here joint (0.1k)" in table[0] and [row[2] for row in table[2:]] == ["1", "2", "3"]
    assert "\nquestion: where is the " in out  # the story shown is task 2's ("where is the milk?")


# --- the training: the paper's settings and the official schedule -----------------------------

def test_the_schedule_is_the_official_codes():
    """config_babi.m / train_linear_start.m: LS 20 epochs at 0.005, then the schedule restarts at
    0.005 for 100 epochs, halved at the start of epochs 25, 50, 75, 100; without LS 0.01, likewise.
    config_babi_joint.m: LS 30 epochs at 0.005, then 60 epochs halved at the start of epochs 15, 30, 45, 60."""
    per_epoch = 10

    def at(epoch, linear_start=True, within=1):  # the first (or given) step of an epoch, 1-based
        return E.memn2n_schedule((epoch - 1) * per_epoch + within, per_epoch, 20 if linear_start else 0, 0.01, 25)

    assert [at(e) for e in (1, 20)] == [(0.005, True)] * 2
    assert E.memn2n_schedule(60 * per_epoch, per_epoch, 60, 0.01, 25) == (0.005, True)  # LS's lr stays constant
    joint = lambda epoch: E.memn2n_schedule((epoch - 1) * per_epoch + 1, per_epoch, 30, 0.01, 15)
    assert [joint(e) for e in (1, 30, 31, 44, 45, 59, 60, 90)] == [
        (0.005, True), (0.005, True), (0.005, False), (0.005, False), (0.0025, False), (0.0025, False),
        (0.00125, False), (0.0003125, False)]
    assert at(20, within=10) == (0.005, True) and at(21) == (0.005, False)
    phase2 = {e: 0.005 for e in range(1, 25)} | {e: 0.0025 for e in range(25, 50)}
    phase2 |= {e: 0.00125 for e in range(50, 75)} | {e: 0.000625 for e in range(75, 100)} | {100: 0.0003125}
    for epoch, lr in phase2.items():
        assert at(20 + epoch) == pytest.approx((lr, False))
        assert at(20 + epoch, within=10)[0] == pytest.approx(lr)
        assert at(epoch, linear_start=False) == pytest.approx((2 * lr, False))


@pytest.fixture
def loops(monkeypatch):
    """Replace the training loop by a recorder: each call's arguments, no training."""
    calls = []

    def record(model, optimizer, next_batch, loss_fn, evaluate, solved, steps, eval_every, lr_at=None,
               clip=None, **rest):
        calls.append(types.SimpleNamespace(model=model, optimizer=optimizer, next_batch=next_batch,
                                           loss_fn=loss_fn, solved=solved, steps=steps, eval_every=eval_every,
                                           lr_at=lr_at, clip=clip))
        return {"steps": 1, "seconds": 0.0, "solved": False, "metrics": {}, "losses": [1.0]}
    monkeypatch.setattr(train, "training_loop", record)
    return calls


def test_the_default_run_trains_the_papers_model_the_papers_way(run_train, loops):
    code, out, err = run_train("memn2n", "--task", 1, "--test-size", 10, "--device", "cpu")
    assert code == 0, err
    [call] = loops
    model, n = call.model, 9000  # 10k questions by default, the last 10% held out for validation
    assert result_lines(out)[0]["metrics"]["training_questions"] == n
    config = model.config
    assert (config.hops, config.d, config.memory_size, config.tying, config.encoding, config.random_noise,
            config.temporal) == (3, 20, 50, "adjacent", "pe", 0.1, True)
    assert model.vocab[0] == "<nil>" and {"where", "mary", "kitchen"} <= set(model.vocab)
    assert len(model.vocab) == config.vocab_size
    per_epoch = n // 32
    assert call.steps == (10 + 40) * per_epoch and call.eval_every == per_epoch
    assert call.clip == pytest.approx(40 / 32)  # clip 40 on the summed loss = 40 / 32 on the mean
    [group] = call.optimizer.param_groups
    assert type(call.optimizer) is torch.optim.SGD and group["momentum"] == 0 and group["weight_decay"] == 0
    story, query, answer = call.next_batch()
    assert len(answer) == 32
    torch.manual_seed(0)
    loss = call.loss_fn(model.eval(), (story, query, answer))
    summed = F.cross_entropy(model(story, query), answer, reduction="sum")
    assert loss.item() == pytest.approx(summed.item() / 32)
    ls_steps = 10 * per_epoch  # the 10k set: 10 epochs of LS
    epoch_25 = ls_steps + 24 * per_epoch + 1
    for step, lr, linear_start in ((1, 0.005, True), (ls_steps, 0.005, True), (ls_steps + 1, 0.005, False),
                                   (epoch_25 - 1, 0.005, False), (epoch_25, 0.0025, False)):
        assert call.lr_at(step) == pytest.approx(lr * 32) and model.linear_start == linear_start, step
        assert call.solved({"val_error": 0.0}) == (not linear_start)
    assert call.solved({"val_error": 0.03}) and not call.solved({"val_error": 0.031})


def test_data_dir_trains_with_the_official_codes_recipes_and_no_early_stop(run_train, loops, tmp_path):
    """One task: config_babi.m (d 20, LS 20 epochs, then 100, halved every 25); several: config_babi_joint.m
    (d 50, LS 30 epochs, then 60, halved every 15). Every epoch trained unless --target-error asks."""
    write_babi_files(tmp_path, 1)
    write_babi_files(tmp_path, 3)  # 45 + 45 training questions: one step an epoch
    for tasks, extra, target in (("1,3", [], None), ("1,3", ["--target-error", 0.05], 0.05), ("3", [], None)):
        code, out, err = run_train("memn2n", "--data", tmp_path, "--task", tasks, "--batch-size", 90, *extra,
                                   "--device", "cpu")
        assert code == 0, err
        call = loops.pop()
        if tasks == "1,3":
            assert [(r["task"], r["metrics"]["training_questions"]) for r in result_lines(out)] == [
                ("babi-task1", 90), ("babi-task3", 90)]
            assert call.steps == 30 + 60 and call.model.config.d == 50
            assert call.lr_at(30) == pytest.approx(0.005 * 90) and call.model.linear_start
            assert call.lr_at(31 + 14) == pytest.approx(0.0025 * 90) and not call.model.linear_start
        else:  # 45 questions, batch 45
            assert call.steps == 20 + 100 and call.model.config.d == 20
            assert call.lr_at(21) == pytest.approx(0.005 * 45) and not call.model.linear_start
            assert call.lr_at(21 + 24) == pytest.approx(0.0025 * 45)
        assert call.solved({"val_error": 0.05}) == (target is not None)  # early stop only if asked for
        assert not call.solved({"val_error": 0.051})


def test_no_linear_start_trains_at_0_01_with_the_softmax(run_train, loops):
    code, out, err = run_train("memn2n", "--task", 1, "--train-size", 100, "--test-size", 10, "--epochs", 30,
                               "--no-linear-start", "--batch-size", 10, "--memory-size", 7, "--device", "cpu")
    assert code == 0, err
    [call] = loops
    assert call.steps == 30 * 9 and call.model.config.memory_size == 7
    # an epoch (9 batches of 10) is the 90 training questions, each once, in a random order
    args = types.SimpleNamespace(data=None, seed=0, test_size=10, memory_size=7, device="cpu")
    _, query, answer = E.memn2n_data(args, [1], 100)[1]["train"]
    batches = [call.next_batch() for _ in range(9)]
    assert all(b[0].shape[1] <= 7 and len(b[2]) == 10 for b in batches)
    epoch = sorted((*q.tolist(), a) for _, qs, ans in batches for q, a in zip(qs, ans.tolist()))
    assert epoch == sorted((*q.tolist(), a) for q, a in zip(query, answer.tolist()))
    assert [b[2].tolist() for b in batches] != [answer[i:i + 10].tolist() for i in range(0, 90, 10)]
    assert call.lr_at(1) == pytest.approx(0.01 * 10) and not call.model.linear_start
    assert call.lr_at(24 * 9) == pytest.approx(0.1) and call.lr_at(24 * 9 + 1) == pytest.approx(0.05)


def test_compare_trains_each_column_of_table_1_jointly_with_its_settings_for_all_its_epochs(run_train, loops):
    code, out, err = run_train("memn2n", "--compare", "--train-size", 30, "--test-size", 10, "--batch-size", 81,
                               "--device", "cpu")
    assert code == 0, err
    results = result_lines(out)  # a line per task of each column, the column's run shared
    assert [(r["task"], r["variant"], r["metrics"]["hops"], r["metrics"]["training_questions"]) for r in results] \
        == [(f"babi-task{t}", f"{k} hop{'s' * (k > 1)} joint", k, 81) for k in (1, 2, 3) for t in (1, 2, 3)]
    assert len(loops) == 3  # one model a column, on tasks 1-3 together (3 x 27 questions)
    for call, hops in zip(loops, (1, 2, 3)):
        assert call.model.config.hops == hops
        assert call.model.config.random_noise == (0.1 if hops == 3 else 0.0)  # PE LS / PE LS / PE LS RN
        assert call.steps == 30 + 60 and call.model.config.d == 50  # one step an epoch: 81 questions, batch 81
        call.lr_at(call.steps)
        assert not call.model.linear_start and not call.solved({"val_error": 0.0})  # no early stop
    table = out.strip().splitlines()[-5:]
    assert table[0].startswith("| bAbI task") and "3 hops paper PE LS RN joint (1k)" in table[0]
    assert "1 hop paper PE LS joint (1k)" in table[0] and "2 hops paper PE LS joint (1k)" in table[0]
    assert "1 hop here joint (0.03k)" in table[0]
    paper = [[float(cell) for cell in row.split("|")[3:8:2]] for row in table[2:]]
    assert paper == [[0.8, 0.0, 0.0], [62.0, 15.6, 11.4], [76.9, 31.6, 21.9]]  # Table 1, tasks 1-3
    assert table[4].startswith("| 3: three-supporting-facts")


def test_compare_trains_on_1000_questions_by_default(run_train, loops):
    code, out, err = run_train("memn2n", "--compare", "--test-size", 10, "--epochs", 1, "--device", "cpu")
    assert code == 0, err
    assert {r["metrics"]["training_questions"] for r in result_lines(out)} == {2700}


@pytest.mark.parametrize("seed, seeds", [(7, [7, 8, 9]), (train.MAX_SEED - 1, [train.MAX_SEED - 1, train.MAX_SEED, 0])])
def test_restarts_train_on_the_same_data_from_their_own_seeds_and_keep_the_lowest_training_error(
        run_train, loops, monkeypatch, tmp_path, seed, seeds):
    """Section 4.2: each configuration trained 10 times from different initialisations, the run with the lowest
    training error kept. Here restart r scores training error train_errors[r] and test error 0.1 x (r + 1)."""
    train_errors = [0.5, 0.2, 0.7]

    def scores(model, data, batch_size=500):  # the training questions are the 90 of --train-size 100
        restart = [call.model for call in loops].index(model)
        return 0.0, train_errors[restart] if len(data[2]) == 90 else 0.1 * (restart + 1)
    monkeypatch.setattr(E, "memn2n_scores", scores)
    code, out, err = run_train("memn2n", "--task", 1, "--train-size", 100, "--test-size", 20, "--restarts", 3,
                               "--seed", seed, "--batch-size", 10, "--out", tmp_path, "--device", "cpu")
    assert code == 0, err
    assert len(loops) == 3
    for call, restart_seed in zip(loops, seeds):  # restart r: initialised from seed --seed + r (mod 2^32)
        assert f"(seed {restart_seed})" in out
        torch.manual_seed(restart_seed)
        expected = memn2n.MemN2N(call.model.config)
        assert all(torch.equal(a, b) for a, b in zip(expected.parameters(), call.model.parameters()))
    # the same data: each restart's first epoch is the same 90 questions, in an order of its own
    epochs = [[call.next_batch() for _ in range(9)] for call in loops]
    content = [sorted((*q.tolist(), a) for _, qs, ans in epoch for q, a in zip(qs, ans.tolist())) for epoch in epochs]
    assert content[0] == content[1] == content[2] and loops[0].model.vocab == loops[2].model.vocab
    assert epochs[0][0][2].tolist() != epochs[1][0][2].tolist()
    [result] = result_lines(out)
    metrics = result["metrics"]
    kept = (metrics["restarts"], metrics["kept_restart"], metrics["train_error"], metrics["test_error"])
    assert kept == (3, 2, 0.2, 0.2)
    assert metrics["train_error_restarts"] == train_errors and metrics["test_error_restarts"] == [0.1, 0.2, 0.3]
    assert "kept restart 2 of 3 (lowest training error): task 1: test error 20.0%" in out
    assert "min 10.0 / median 20.0 / max 30.0%" in out
    saved = torch.load(tmp_path / "model.pt", weights_only=True)  # the kept restart's model
    assert all(torch.equal(saved["state_dict"][k], v) for k, v in loops[1].model.state_dict().items())
    for flag in ("--resume", "--eval"):  # model.pt is one restart's: not the run to resume
        code, _, err = run_train("memn2n", flag, tmp_path, "--device", "cpu")
        assert code == 2 and len(err.strip().splitlines()) == 1 and "3 restarts" in err


def test_a_checkpoint_from_before_restarts_and_task_lists_is_refused_in_one_line(run_train, tmp_path):
    assert run_train("memn2n", "--task", 1, "--train-size", 20, "--test-size", 5, "--steps", 1, "--out", tmp_path,
                     "--device", "cpu")[0] == 0
    saved = torch.load(tmp_path / "model.pt", weights_only=True)
    del saved["flags"]["restarts"]
    saved["flags"]["task"] = 1
    torch.save(saved, tmp_path / "model.pt")
    for flag in ("--resume", "--eval"):
        code, _, err = run_train("memn2n", flag, tmp_path, "--device", "cpu")
        assert code == 2 and len(err.strip().splitlines()) == 1 and "before train.py had --restarts" in err, err


# --- real runs ---------------------------------------------------------------------------------

def progress_losses(stdout):
    return [float(line.split("| loss ")[1].split()[0]) for line in stdout.splitlines() if "| loss " in line]


def test_a_short_run_on_task_1_lowers_the_loss_and_draws_the_hops(run_train, tmp_path):
    code, out, err = run_train("memn2n", "--task", 1, "--hops", 2, "--train-size", 400, "--test-size", 100,
                               "--ls-epochs", 4, "--epochs", 8, "--out", tmp_path, "--device", "cpu")
    assert code == 0, err
    [result] = result_lines(out)
    check_result(result, "memn2n")
    assert result["task"] == "babi-task1" and result["metrics"]["training_questions"] == 360
    losses = progress_losses(out)
    assert len(losses) == 12 and losses[-1] < 0.8 * losses[0]
    assert "step 45: linear start over" in out  # after 4 epochs of 11 steps
    assert "support | hop 1 | hop 2 | sentence" in out
    assert "attention of each hop (* supporting fact)" in out and (tmp_path / "result.json").exists()
    if HAS_MATPLOTLIB:
        assert (tmp_path / "hops.png").exists()


def test_a_checkpoint_saved_during_linear_start_reloads_to_the_same_test_error(run_train, tmp_path):
    code, out, err = run_train("memn2n", "--task", 1, "--train-size", 100, "--test-size", 50, "--steps", 3,
                               "--out", tmp_path, "--device", "cpu")
    assert code == 0, err
    result = json.loads((tmp_path / "result.json").read_text())
    saved = torch.load(tmp_path / "model.pt", weights_only=True)
    model = memn2n.MemN2N(memn2n.MemN2NConfig(**saved["config"]))
    model.load_state_dict(saved["state_dict"])
    assert model.linear_start  # 3 steps: still in linear start
    args = types.SimpleNamespace(data=None, seed=0, test_size=50, memory_size=50, device="cpu")
    _, data, _ = E.memn2n_data(args, [1], 100)
    with torch.no_grad():
        assert E.memn2n_scores(model.eval(), data["test"][1])[1] == result["metrics"]["test_error"]
