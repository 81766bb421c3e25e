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
FIRST_CHANCE = 2  # a question from the 2nd statement after the previous one (the released files)


# --- the generator: the public generator's rules and the released files' --------------------------

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


class Reader:
    """What a reader of a story knows after each line, rebuilt here from the text alone: where each actor
    went (and on which line), who holds what since which line, where a dropped object lies (known when its
    dropper's place was), and each object's journey (its holder's moves while holding it, ended by a drop).
    Task 2 asks about a dropped object if the reader knows where one lies, else about a held one; task 3
    asks about a journey only while its dropper has not moved since the drop."""

    def __init__(self):
        self.place, self.holder, self.lying, self.journey, self.dropped = {}, {}, {}, {}, {}

    def read(self, i, text):
        actor, kind, _, what, _ = statement_kind(text)
        if kind == "move":
            assert self.place.get(actor, (None,))[0] != what, "a move goes somewhere else"
            self.place[actor] = (what, i)
            for obj, (holder, _) in self.holder.items():
                if holder == actor:
                    self.journey[obj].append((what, i))
        elif kind == "get":
            assert what not in self.holder, "got while someone holds it"
            if what in self.lying and actor in self.place:
                assert self.lying[what][0] == self.place[actor][0], "got where it lies"
            self.holder[what], self.journey[what] = (actor, i), []
            self.lying.pop(what, None)
            self.dropped.pop(what, None)
        else:
            assert self.holder.pop(what)[0] == actor, "dropped by whoever holds it"
            self.lying.pop(what, None)
            if actor in self.place:
                self.lying[what] = (self.place[actor][0], {self.place[actor][1], i})
            self.dropped[what] = (self.journey[what], i, actor)

    def still_there(self, obj):
        """Dropped by an actor who has not moved since."""
        _, drop, dropper = self.dropped[obj]
        return self.place.get(dropper, (None, 0))[1] < drop

    def answers(self, task):
        """{question text: (answer, support)} of every question the rules allow now."""
        if task == 1:
            return {f"Where is {a}?": (place, {line}) for a, (place, line) in self.place.items()}
        if task == 2:
            lying = {f"Where is the {o}?": known for o, known in self.lying.items()}
            return lying or {f"Where is the {o}?": (self.place[a][0], {got, self.place[a][1]})
                             for o, (a, got) in self.holder.items() if a in self.place}
        found = {}
        for obj, (journey, drop, _) in self.dropped.items():
            if not self.still_there(obj):
                continue
            places = [place for place, _ in journey]
            for k in range(1, len(journey)):
                if places.count(places[k]) == 1:
                    found[f"Where was the {obj} before the {places[k]}?"] = (
                        places[k - 1], {drop, journey[k][1], journey[k - 1][1]})
        return found


def replay(story, task):
    """Check every line against the rules; return whether a question came at each chance (tasks 2 and 3:
    after each statement that is at least the 2nd after the previous question, when one can be asked)."""
    reader, asked_at_chance, since = Reader(), [], 0
    for i, line in enumerate(story, 1):
        if line.answer is None:
            reader.read(i, line.text)
            since += 1
            if task != 1 and since >= FIRST_CHANCE and reader.answers(task):
                asked_at_chance.append(story[i].answer is not None)
            continue
        allowed = reader.answers(task)
        assert line.text in allowed and (line.answer, set(line.support)) == allowed[line.text], line.text
        assert since == 2 if task == 1 else since >= FIRST_CHANCE
        since = 0
    return asked_at_chance


@pytest.mark.parametrize("task", [1, 2, 3])
def test_generated_stories_follow_the_rules_and_round_trip(task):
    stories = babi.generate(task, 1000, np.random.default_rng(task))
    assert [sum(line.answer is not None for line in s) for s in stories] == [5] * 200  # bAbI 1k: 1000 questions
    short = babi.generate(task, 12, np.random.default_rng(0))
    assert [sum(line.answer is not None for line in s) for s in short] == [5, 5, 2]
    for story in stories:
        replay(story, task)
    text = babi.write(stories)
    assert babi.parse(text) == stories
    assert babi.write(babi.parse(text)) == text
    supports = collections.Counter(len(line.support) for s in stories for line in s if line.answer)
    assert supports == {task: 1000}  # one, two, three supporting facts
    if task == 1:
        assert {len(s) for s in stories} == {15}


@pytest.mark.parametrize("task", [2, 3])
def test_at_each_chance_a_question_comes_with_probability_one_half(task):
    chances = [asked for story in babi.generate(task, 3000, np.random.default_rng(5)) for asked in replay(story, task)]
    assert abs(np.mean(chances) - 0.5) < 5 * math.sqrt(0.25 / len(chances)), (np.mean(chances), len(chances))


def story_in(rng, at, inside):
    """A story whose hidden world is at (actor -> location) and inside (object -> location or actor)."""
    told = babi._Story(rng)
    told.at, told.inside = dict(at), dict(inside)
    return told


def test_a_statement_is_a_move_two_times_in_three_else_a_valid_get_or_drop_uniformly():
    rng, kinds, n = np.random.default_rng(2), collections.Counter(), 6000
    for _ in range(n):  # everyone in the kitchen, every object lying there: 12 valid gets, no drop
        told = story_in(rng, {a: "kitchen" for a in ACTORS}, {o: "kitchen" for o in OBJECTS})
        told.statement()
        actor, kind, _, what, _ = statement_kind(told.lines[-1].text)
        kinds[kind if kind == "move" else (actor, what)] += 1
    assert abs(kinds.pop("move") / n - 2 / 3) < 5 * math.sqrt(2 / 9 / n)
    assert set(kinds) == {(a, o) for a in ACTORS for o in OBJECTS}
    share = 1 / 3 / 12
    assert all(abs(c / n - share) < 5 * math.sqrt(share * (1 - share) / n) for c in kinds.values()), kinds


def test_a_get_or_drop_gives_up_as_often_as_100_random_tries_all_fail():
    """Clause.sample_valid: 100 random (actor, get | drop, object) clauses of 24; with one valid clause (Mary
    can drop the milk, nobody stands by a free object) all 100 fail with probability (23/24)^100."""
    rng, n = np.random.default_rng(4), 20000
    at = {"John": "kitchen", "Mary": "garden", "Sandra": "office", "Daniel": "hallway"}
    inside = {"milk": "Mary", "apple": "bedroom", "football": "bathroom"}
    gave_up = sum(not story_in(rng, at, inside).get_or_drop() for _ in range(n))
    p = (23 / 24) ** 100
    assert abs(gave_up / n - p) < 5 * math.sqrt(p * (1 - p) / n), gave_up
    for _ in range(20):  # no valid get or drop: a move
        alone = story_in(rng, at, {**inside, "milk": "bedroom"})
        alone.statement()
        assert statement_kind(alone.lines[0].text)[1] == "move"


def test_the_hidden_world_starts_anywhere_so_a_story_may_open_with_a_get():
    """The released files open with "Mary moved to the bathroom. ... Mary got the football there."."""
    openers = collections.Counter(statement_kind(s[0].text)[1] for s in babi.generate(2, 2000, np.random.default_rng(6)))
    assert openers["get"] > 0.05 * sum(openers.values()) and openers["drop"] == 0


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
