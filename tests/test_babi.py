"""The bAbI generator's rules against the public generator's (facebookarchive/bAbI-tasks), and the official
file format: parsing, writing, examples and tensors."""
import collections
import math

import numpy as np
import pytest

from experiments import babi

ACTORS = {"John", "Mary", "Sandra", "Daniel"}
LOCATIONS = {"bedroom", "kitchen", "garden", "hallway", "bathroom", "office"}
OBJECTS = {"apple", "football", "milk"}
MOVES = {"moved to", "went to", "went back to", "journeyed to", "travelled to"}
GETS = {"got", "grabbed", "picked up", "took"}
DROPS = {"dropped", "discarded", "put down", "left"}


# --- the bAbI-style generator -------------------------------------------------------------------

def statement_kind(text):
    """(actor, 'move' | 'get' | 'drop', verb, object or location, 'there' or '')."""
    words = text.rstrip(".").split()
    actor, rest = words[0], " ".join(words[1:])
    for kind, verbs in (("move", MOVES), ("get", GETS), ("drop", DROPS)):
        for verb in verbs:
            if rest.startswith(verb + " the "):
                what = rest[len(verb) + 5:].split()
                assert actor in ACTORS and len(what) in (1, 2), text
                assert what[0] in (LOCATIONS if kind == "move" else OBJECTS), text
                assert what[1:] in ([], ["there"]) and (kind != "move" or len(what) == 1), text
                return actor, kind, verb, what[0], " ".join(what[1:])
    raise AssertionError(f"not a bAbI statement: {text!r}")


def replay(story):
    """Read a story's statements back into a world state and check each question, its answer and its
    supporting facts in their order, against it."""
    place, holder, lying, carried = {}, {}, {}, {}
    for i, line in enumerate(story, 1):
        if line.answer is None:
            actor, kind, _, what, _ = statement_kind(line.text)
            if kind == "move":
                assert place.get(actor, (None,))[0] != what, "a move goes somewhere else"
                for obj, (who, got) in holder.items():
                    if who == actor:  # the object travels with its carrier
                        carried[obj] = (place[actor][0], what, [got, place[actor][1], i])
                place[actor] = (what, i)
            elif kind == "get":
                assert actor in place and what not in holder, line.text
                assert lying.get(what, place[actor])[0] == place[actor][0], "got where it lies"
                holder[what] = (actor, i)
                lying.pop(what, None)
            else:
                assert holder.pop(what)[0] == actor, "dropped by whoever holds it"
                lying[what] = (place[actor][0], i, place[actor][1])
            continue
        words = line.text.rstrip("?").split()
        assert i > 1 and all(story[s - 1].answer is None for s in line.support)
        if words[:2] == ["Where", "is"] and words[2] != "the":  # task 1: the actor's latest move
            assert (line.answer, list(line.support)) == (place[words[2]][0], [place[words[2]][1]])
        elif words[:2] == ["Where", "is"]:  # task 2: (got, the holder's move) or (drop, the dropper's move)
            obj = words[3]
            if obj in holder:
                actor, got = holder[obj]
                expected = (place[actor][0], [got, place[actor][1]])
            else:
                expected = (lying[obj][0], [lying[obj][1], lying[obj][2]])
            assert (line.answer, list(line.support)) == expected
        else:  # task 3: "Where was the <object> before the <location>": (got, move from, move to)
            assert words[:3] == ["Where", "was", "the"] and words[4:6] == ["before", "the"]
            frm, to, support = carried[words[3]]
            assert (line.answer, words[-1], list(line.support)) == (frm, to, support)


@pytest.mark.parametrize("task", [1, 2, 3])
def test_generated_stories_are_consistent_with_their_answers_and_round_trip(task):
    stories = babi.generate(task, 200, np.random.default_rng(task))
    assert sum(line.answer is not None for s in stories for line in s) == 200
    assert [sum(line.answer is not None for line in s) for s in stories] == [5] * 40
    short = babi.generate(task, 12, np.random.default_rng(0))
    assert [sum(line.answer is not None for line in s) for s in short] == [5, 5, 2]
    for story in stories:
        replay(story)
    text = babi.write(stories)
    assert babi.parse(text) == stories
    assert babi.write(babi.parse(text)) == text
    for example in babi.to_examples(stories):  # the supporting facts fit in the 50-memory window
        assert min(example.support) >= len(example.memory) - 50
        assert example.answer in LOCATIONS
        assert any(example.answer in example.memory[s] for s in example.support)


@pytest.mark.parametrize("task,low,high", [(1, 2, 2), (2, 1, 6), (3, 4, 20)])
def test_statements_between_questions_are_drawn_uniformly_from_the_tasks_gap(task, low, high):
    """U{low..high} statements before each question, more only while no question can be asked."""
    gaps = collections.Counter()
    for story in babi.generate(task, 3000, np.random.default_rng(7)):
        gap = 0
        for line in story:
            if line.answer is None:
                gap += 1
            else:
                gaps[gap], gap = gaps[gap] + 1, 0
    n = sum(gaps.values())
    assert min(gaps) == low
    for g in range(low, high + 1):
        assert gaps[g] / n > 0.5 / (high - low + 1), g
    assert sum(c for g, c in gaps.items() if g > high) / n < 0.12
    if task == 1:
        assert gaps == {2: n}


@pytest.mark.parametrize("task", [2, 3])
def test_events_are_a_move_half_the_time_a_get_or_a_drop_a_quarter_each(task):
    world = babi._World(task, np.random.default_rng(3))
    calls = collections.Counter()
    record = lambda kind: lambda: calls.update([kind])
    world.move, world.get, world.drop = record("move"), record("get"), record("drop")
    draws = 8000
    for _ in range(draws):
        world.event()
    for kind, share in (("move", 0.5), ("get", 0.25), ("drop", 0.25)):
        assert abs(calls[kind] / draws - share) < 5 * math.sqrt(share * (1 - share) / draws), kind
    world = babi._World(1, np.random.default_rng(3))
    world.move, world.get, world.drop = record("move1"), record("get1"), record("drop1")
    for _ in range(200):
        world.event()
    assert calls["move1"] == 200


def test_the_vocabulary_is_the_babi_worlds_and_there_ends_half_the_gets_and_drops():
    seen = collections.defaultdict(set)
    there = []
    for task in (1, 2, 3):
        for story in babi.generate(task, 600, np.random.default_rng(11)):
            for line in story:
                if line.answer is None:
                    actor, kind, verb, what, place = statement_kind(line.text)
                    seen["actor"].add(actor)
                    seen[kind].add(verb)
                    seen["location" if kind == "move" else "object"].add(what)
                    if kind != "move":
                        there.append(place == "there")
                else:
                    assert line.text.endswith("?") and line.answer in LOCATIONS
                    seen["question"].add(" ".join(w for w in line.text.rstrip("?").split()
                                                  if w not in ACTORS | LOCATIONS | OBJECTS))
    assert seen == {"actor": ACTORS, "location": LOCATIONS, "object": OBJECTS, "move": MOVES, "get": GETS,
                    "drop": DROPS, "question": {"Where is", "Where is the", "Where was the before the"}}
    assert abs(np.mean(there) - 0.5) < 5 * math.sqrt(0.25 / len(there))


# --- the official file format and the tensors ------------------------------------------------

def test_a_handwritten_file_parses_into_examples_and_tensors():
    text = ("1 Mary moved to the bathroom.\n2 John went to the hallway.\n"
            "3 Where is Mary? \tbathroom\t1\n4 Daniel went back to the hallway.\n"
            "5 Where is Daniel? \thallway\t4\n1 Sandra journeyed to the garden.\n"
            "2 Where is Sandra? \tgarden\t1\n")
    examples = babi.to_examples(babi.parse(text))
    assert [(len(e.memory), e.question, e.answer, e.support) for e in examples] == [
        (2, ["where", "is", "mary"], "bathroom", [0]), (3, ["where", "is", "daniel"], "hallway", [2]),
        (1, ["where", "is", "sandra"], "garden", [0])]
    vocab = babi.vocabulary(examples)
    assert vocab[0] == "<nil>" and vocab[1:] == sorted(vocab[1:])
    story, query, answer = babi.to_tensors(examples, vocab, memory_size=2)
    assert story.shape == (3, 2, 6) and query.shape == (3, 6)
    assert [vocab[w] for w in story[1, 1] if w] == "daniel went back to the hallway".split()  # latest 2 kept
    assert (story[2, 1] == 0).all() and vocab[answer[0]] == "bathroom"


def test_the_memory_holds_the_50_latest_statements_by_default():
    lines = [babi.Line(f"Mary moved to the room{i}.") for i in range(1, 61)]
    lines.append(babi.Line("Where is Mary?", "room60", (60,)))
    examples = babi.to_examples([lines])
    vocab = babi.vocabulary(examples)
    story, _, _ = babi.to_tensors(examples, vocab)
    assert story.shape[1] == 50
    assert [vocab[story[0, i, 4]] for i in (0, 49)] == ["room11", "room60"]  # statements 11..60 of 60
