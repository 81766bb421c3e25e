"""The MemN2N experiment: the bAbI-style generator, the official file format, and the command line."""
import numpy as np
import pytest

from conftest import HAS_MATPLOTLIB, check_result, result_lines
from experiments import memn2n_experiment


# --- the bAbI-style data ------------------------------------------------------------------------

def replay(story):
    """Read a story's statements back into a world state and check each question against it."""
    place, holder, lying, carried = {}, {}, {}, {}
    for i, line in enumerate(story, 1):
        words = line.text.rstrip(".?").split()
        if line.answer is None:
            actor = words[0]
            if words[-2:-1] == ["the"] and words[-3] == "to":  # "<actor> <verb> to the <location>"
                for obj, (who, got) in holder.items():
                    if who == actor:
                        carried[obj] = (place[actor][0], words[-1], {got, place[actor][1], i})
                place[actor] = (words[-1], i)
            else:
                obj = words[words.index("the") + 1]
                assert obj in memn2n_experiment.BABI_OBJECTS and actor in place, line.text
                if any(line.text.startswith(f"{actor} {v} ") for v in memn2n_experiment.BABI_GET):
                    assert obj not in holder and lying.get(obj, place[actor])[0] == place[actor][0]
                    holder[obj] = (actor, i)
                    lying.pop(obj, None)
                else:
                    assert holder.pop(obj)[0] == actor
                    lying[obj] = (place[actor][0], i, place[actor][1])
            continue
        assert all(story[s - 1].answer is None for s in line.support)
        if words[:2] == ["Where", "is"] and words[2] != "the":  # task 1
            assert (line.answer, set(line.support)) == (place[words[2]][0], {place[words[2]][1]})
        elif words[:2] == ["Where", "is"]:  # task 2
            obj = words[3]
            if obj in holder:
                actor, got = holder[obj]
                expected = (place[actor][0], {got, place[actor][1]})
            else:
                expected = (lying[obj][0], {lying[obj][1], lying[obj][2]})
            assert (line.answer, set(line.support)) == expected
        else:  # task 3: "Where was the <object> before the <location>"
            frm, to, support = carried[words[3]]
            assert (line.answer, to, set(line.support)) == (frm, words[-1], support)


@pytest.mark.parametrize("task", [1, 2, 3])
def test_generated_stories_are_consistent_and_round_trip(task):
    stories = memn2n_experiment.babi_stories(task, 60, np.random.default_rng(task))
    assert sum(line.answer is not None for s in stories for line in s) == 60
    for story in stories:
        replay(story)
    text = memn2n_experiment.write_babi(stories)
    assert memn2n_experiment.parse_babi(text) == stories
    assert memn2n_experiment.write_babi(memn2n_experiment.parse_babi(text)) == text
    for example in memn2n_experiment.babi_examples(stories):  # the supporting facts fit in the 50-memory window
        assert min(example.support) >= len(example.memory) - memn2n_experiment.BABI_MEMORY
        assert example.answer in memn2n_experiment.babi_words(" ".join(memn2n_experiment.BABI_LOCATIONS))


def test_a_handwritten_file_parses_into_examples_and_tensors():
    text = ("1 Mary moved to the bathroom.\n2 John went to the hallway.\n"
            "3 Where is Mary? \tbathroom\t1\n4 Daniel went back to the hallway.\n"
            "5 Where is Daniel? \thallway\t4\n1 Sandra journeyed to the garden.\n"
            "2 Where is Sandra? \tgarden\t1\n")
    examples = memn2n_experiment.babi_examples(memn2n_experiment.parse_babi(text))
    assert [(len(e.memory), e.question, e.answer, e.support) for e in examples] == [
        (2, ["where", "is", "mary"], "bathroom", [0]), (3, ["where", "is", "daniel"], "hallway", [2]),
        (1, ["where", "is", "sandra"], "garden", [0])]
    vocab = memn2n_experiment.babi_vocab(examples)
    story, query, answer = memn2n_experiment.babi_tensors(examples, vocab, memory_size=2)
    assert story.shape == (3, 2, 6) and query.shape == (3, 6)
    assert [vocab[w] for w in story[1, 1] if w] == "daniel went back to the hallway".split()  # latest 2 kept
    assert (story[2, 1] == 0).all() and vocab[answer[0]] == "bathroom"
    for bad in ["1 Mary moved.\n3 John moved.\n", "x Mary\n", "1 Mary moved.\n2 Where? \tbed\t2\n"]:
        with pytest.raises(ValueError):
            memn2n_experiment.parse_babi(bad)


# --- the experiment ---------------------------------------------------------------------------

def progress_losses(stdout):
    return [float(line.split("| loss ")[1].split()[0]) for line in stdout.splitlines() if "| loss " in line]


def test_a_short_run_on_task_1_lowers_the_loss_and_draws_the_hops(run_train, tmp_path):
    code, out, err = run_train("memn2n", "--task", 1, "--hops", 2, "--train-size", 400, "--test-size", 100,
                               "--epochs", 12, "--target-error", 0, "--out", tmp_path, "--device", "cpu")
    assert code == 0, err
    [result] = result_lines(out)
    check_result(result, "memn2n")
    assert result["task"] == "babi-task1" and result["metrics"]["training_questions"] == 360
    losses = progress_losses(out)
    assert len(losses) == 12 and losses[-1] < 0.8 * losses[0]
    assert "support | hop 1 | hop 2 | sentence" in out and "linear start over" in out
    assert "attention of each hop (* supporting fact)" in out and (tmp_path / "result.json").exists()
    if HAS_MATPLOTLIB:
        assert (tmp_path / "hops.png").exists()


def test_data_dir_trains_on_real_format_files_and_bad_input_is_one_line(run_train, tmp_path):
    for split, seed, n in (("train", 1, 50), ("test", 2, 20)):
        stories = memn2n_experiment.babi_stories(2, n, np.random.default_rng(seed))
        (tmp_path / f"qa2_two-supporting-facts_{split}.txt").write_text(memn2n_experiment.write_babi(stories))
    code, out, err = run_train("memn2n", "--data", tmp_path, "--epochs", 1, "--device", "cpu")
    assert code == 0, err
    assert result_lines(out)[0]["metrics"]["training_questions"] == 45
    (tmp_path / "qa2_two-supporting-facts_test.txt").write_text("1 Mary moved.\n3 John moved.\n")
    for argv in (["--data", tmp_path], ["--data", tmp_path / "missing"], ["--data", tmp_path, "--task", 1]):
        code, out, err = run_train("memn2n", *argv, "--epochs", 1)
        assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_compare_prints_a_result_per_task_and_hops_then_the_table(run_train):
    code, out, err = run_train("memn2n", "--compare", "--train-size", 30, "--test-size", 20, "--epochs", 1,
                               "--device", "cpu")
    assert code == 0, err
    results = result_lines(out)
    assert [(r["task"], r["metrics"]["hops"]) for r in results] == [
        (f"babi-task{t}", k) for t in (1, 2, 3) for k in (1, 2, 3)]
    table = out.strip().splitlines()[-5:]
    assert table[0].startswith("| bAbI task") and "3 hops paper (1k)" in table[0]
    assert "| 62.0" in table[3] and table[4].startswith("| 3: three-supporting-facts")
