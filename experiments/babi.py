"""bAbI tasks 1-3 (Weston et al. 2015, arXiv 1502.05698): a generator of stories and questions that follows
the rules of the public generator (github.com/facebookarchive/bAbI-tasks, Lua: WhereIsActor, WhereIsObject,
WhereWasObject), and a reader of the official files. Used by the MemN2N experiment.

The simulation (the public code's World, actions and Knowledge). Four actors and three objects in six
locations. A story is a list of statements, each a valid action drawn at random, and a question every few
statements, five questions a story. Task 1 ("Where is Mary?"): two moves, then a question about an actor
whose location the story has told (its latest move). Tasks 2 ("Where is the milk?") and 3 ("Where was the
milk before the office?"): each statement is a move, or else a get or a drop (uniform over the valid
(actor, action, object) triples); from the FIRST_CHANCE-th statement after the previous question on, a
question is asked with probability 1/2 at each statement, if one can be asked. The supporting facts are
what the reader was told: task 2, the get and the holder's latest move, or the drop and the dropper's move
before it (two lines); task 3, a journey: an object carried through two or more locations and dropped,
asked "before the L" for a location L the journey visits once: the drop, the move into L and the move
before it (three lines).

Public generator vs this file: the public code is a rewrite that, its README says, cannot reproduce the
released files exactly. Where the released files (the opening stories of qa2 and qa3, quoted in many
places) show rules of their own, this file follows the released files:
- Phrasing: their verbs ("went back to", "picked up", "discarded", "left", "there" after half the gets and
  drops); the rewrite has fewer ("let go of" instead).
- A move two times in three (75 of the 122 statements of the four released stories checked; the rewrite:
  one in three), and a question from the 2nd statement after the previous one (gaps of two are common
  there; the rewrite waits for the 3rd).
- Task 2 asks about a dropped object whenever the reader knows where one lies, else about a held one, as
  all ten questions of the two opening stories of qa2 ("Where is the football? garden 12 6": the drop and
  the dropper's move before it; the rewrite asks only about held objects).
- Task 3 asks about journeys ("before the bathroom? office 38 25 22": the drop, the move into the bathroom,
  the move before it; the rewrite: the object's last two known locations), and only while the dropper has
  not moved since the drop, as all eight questions of two released qa3 stories.
- The hidden starting places are drawn at random per story (the rewrite's world file fixes them, but the
  released files open with "Mary moved to the bathroom. ... Mary got the football there.", which that
  fixed world forbids).
- Sampling: the rewrite tries 100 random clauses and gives up (then draws the action again); here the same
  distribution is drawn in one step: give up with probability (1 - valid / tried)^100, else a valid clause
  uniformly.

The official text format (--data DIR reads the real files):
    1 Mary moved to the bathroom.
    2 Mary got the football there.
    3 Where is the football? <TAB>bathroom<TAB>1 2      (answer, then the supporting line ids)
"""
import glob
import os
from typing import NamedTuple

import numpy as np
import torch

import train  # train.UsageError: a bad data file is one line and exit 2

ACTORS = ("John", "Mary", "Sandra", "Daniel")                       # world_basic.txt
LOCATIONS = ("bedroom", "kitchen", "garden", "hallway", "bathroom", "office")
OBJECTS = ("apple", "football", "milk")
MOVE = ("moved to", "went to", "went back to", "journeyed to", "travelled to")  # the released files' verbs
GET = ("got", "grabbed", "picked up", "took")
DROP = ("dropped", "discarded", "put down", "left")
THERE = 0.5                  # share of gets and drops that end with "there"
TASKS = {1: "single-supporting-fact", 2: "two-supporting-facts", 3: "three-supporting-facts"}
QUESTIONS_PER_STORY = 5      # all three tasks: "while num_questions < 5"
MOVE_SHARE = 2 / 3           # a move, or else a get or a drop (released files: 75 of 122 statements; public code 1/3)
FIRST_CHANCE = 2             # a question from the 2nd statement after the previous (released files; public code 3rd)
ASK = 1 / 2                  # then at each statement with probability 1/2 (math.random(2) < 2)
TRIES = 100                  # Clause.sample_valid gives up after 100 random clauses
MEMORY = 50                  # the MemN2N paper's memory: the 50 latest statements
NULL = "<nil>"
# bounds on --data files, far above the real ones', so that a wrong file is refused at once
MAX_LINE, MAX_WORDS, MAX_STORY = 1000, 50, 1000


class Line(NamedTuple):
    text: str               # "Mary got the milk there." or "Where is the milk?"
    answer: str = None      # None for a statement
    support: tuple = ()     # the supporting statements' line ids (1-based, within the story)


class Example(NamedTuple):
    memory: list            # the statements before the question, oldest first, as word lists
    question: list          # word list
    answer: str
    support: list           # indices into memory


class _Story:
    """One story being told: the world as it is, what the reader has been told (each fact with the lines
    that support it), and the lines so far."""

    def __init__(self, rng):
        self.rng, self.lines = rng, []
        self.at = {actor: self.pick(LOCATIONS) for actor in ACTORS}       # the world: where each actor is,
        self.inside = {obj: self.pick(LOCATIONS) for obj in OBJECTS}      # and each object (place or holder)
        self.actor_known = {}    # actor -> (location, support): its latest move
        self.object_known = {}   # object -> (holder or location, support): its latest get or drop
        self.journey = {obj: [] for obj in OBJECTS}  # object -> [(location, line)]: its holder's moves
        self.dropped = {}        # object -> (journey, drop line, dropper): the journey that ended where it lies

    def pick(self, options):
        return options[int(self.rng.integers(len(options)))]

    def say(self, text):
        self.lines.append(Line(text))
        return len(self.lines)

    def there(self):
        return " there" if self.rng.random() < THERE else ""

    def move(self):
        """Teleport: an actor to another location (every actor has five: uniform over the valid pairs)."""
        actor = self.pick(ACTORS)
        self.at[actor] = place = self.pick([place for place in LOCATIONS if place != self.at[actor]])
        line = self.say(f"{actor} {self.pick(MOVE)} the {place}.")
        self.actor_known[actor] = (place, {line})
        for obj in OBJECTS:
            if self.inside[obj] == actor:  # what the actor holds travels too
                self.journey[obj].append((place, line))
        return True

    def get_or_drop(self):
        """A valid get (the object lies where the actor is) or drop (the actor holds it), uniformly, or False
        where the public code's 100 random (actor, get | drop, object) clauses all fail."""
        valid = [(actor, "get", obj) for actor in ACTORS for obj in OBJECTS if self.inside[obj] == self.at[actor]]
        valid += [(actor, "drop", obj) for actor in ACTORS for obj in OBJECTS if self.inside[obj] == actor]
        if self.rng.random() < (1 - len(valid) / (len(ACTORS) * 2 * len(OBJECTS))) ** TRIES:
            return False
        actor, action, obj = self.pick(valid)
        if action == "get":
            self.inside[obj] = actor
            self.journey[obj] = []
            self.dropped.pop(obj, None)
            self.object_known[obj] = (actor, {self.say(f"{actor} {self.pick(GET)} the {obj}{self.there()}.")})
        else:
            self.inside[obj] = self.at[actor]
            line = self.say(f"{actor} {self.pick(DROP)} the {obj}{self.there()}.")
            self.dropped[obj] = (self.journey[obj], line, actor)
            if actor in self.actor_known:  # Drop:update_knowledge: where the dropper is known to be
                place, support = self.actor_known[actor]
                self.object_known[obj] = (place, support | {line})
            else:
                self.object_known.pop(obj, None)
        return True

    def where_known(self, obj):
        """(location, support) of an object as the reader knows it, a holder resolved to the holder's
        location (Knowledge.lua), or None."""
        if obj not in self.object_known:
            return None
        value, support = self.object_known[obj]
        if value in ACTORS:
            if value not in self.actor_known:
                return None
            place, holder_support = self.actor_known[value]
            return place, support | holder_support
        return value, support

    def dropper_still_there(self, obj):
        """The actor who dropped the object has not moved since."""
        _, drop_line, dropper = self.dropped[obj]
        return dropper not in self.actor_known or max(self.actor_known[dropper][1]) < drop_line

    def statement(self):
        """Tasks 2 and 3: a move with probability MOVE_SHARE, else a get or a drop (drawn again if none came)."""
        told = False
        while not told:
            told = self.move() if self.rng.random() < MOVE_SHARE else self.get_or_drop()

    def before_questions(self):
        """Task 3: (object, answer, location, support) for every move of a finished journey (an object carried
        through two or more locations, then dropped) into a location the journey visits once: the drop, that
        move and the move before it."""
        found = []
        for obj, (journey, drop_line, _) in sorted(self.dropped.items()):
            if not self.dropper_still_there(obj):
                continue
            places = [place for place, _ in journey]
            found += [(obj, journey[i - 1][0], place, {drop_line, line, journey[i - 1][1]})
                      for i, (place, line) in enumerate(journey) if i > 0 and places.count(place) == 1]
        return found

    def question(self, task):
        """(text, answer, support) of a question the story can ask now, or None."""
        if task == 1:  # WhereIsActor: an actor whose location is known
            known = sorted(self.actor_known)
            if not known:
                return None
            actor = self.pick(known)
            place, support = self.actor_known[actor]
            return f"Where is {actor}?", place, support
        if task == 2:  # WhereIsObject: an object whose location the reader knows, a dropped one if any
            known = [obj for obj in OBJECTS if self.where_known(obj)]
            lying = [obj for obj in known if self.inside[obj] not in ACTORS]
            if not known:
                return None
            obj = self.pick(lying or known)
            place, support = self.where_known(obj)
            return f"Where is the {obj}?", place, support
        found = self.before_questions()  # WhereWasObject, as the released files ask it
        if not found:
            return None
        obj = self.pick(sorted({f[0] for f in found}))
        _, before, place, support = self.pick([f for f in found if f[0] == obj])
        return f"Where was the {obj} before the {place}?", before, support

    def ask(self, question):
        text, answer, support = question
        self.lines.append(Line(text, answer, tuple(sorted(support))))


def story(task, rng, n_questions=QUESTIONS_PER_STORY):
    """One story of bAbI task 1, 2 or 3: a list of Line, statements and questions."""
    if task not in TASKS:
        raise ValueError(f"bAbI task must be one of {sorted(TASKS)}, got {task}")
    told = _Story(rng)
    if task == 1:  # two moves, then a question, n_questions times (15 lines for five)
        for _ in range(n_questions):
            told.move()
            told.move()
            told.ask(told.question(task))
        return told.lines
    asked, since = 0, 0
    while asked < n_questions:
        told.statement()
        since += 1
        if since >= FIRST_CHANCE and told.rng.random() < ASK and (question := told.question(task)):
            told.ask(question)
            asked, since = asked + 1, 0
    return told.lines


def generate(task, n_questions, rng):
    """Stories holding n_questions questions in all (bAbI's sizes: 1000 or 10000 per split)."""
    return [story(task, rng, min(QUESTIONS_PER_STORY, n_questions - done))
            for done in range(0, n_questions, QUESTIONS_PER_STORY)]


def write(stories):
    """The official text format: 'ID text', questions 'ID text \\tanswer\\tsupporting ids'."""
    lines = [f"{i} {line.text}" if line.answer is None else
             f"{i} {line.text} \t{line.answer}\t{' '.join(map(str, line.support))}"
             for story in stories for i, line in enumerate(story, 1)]
    return "\n".join(lines) + "\n"


def parse(text, name="text"):
    """Stories from the official text format; train.UsageError names the first bad line: name:line."""
    stories = []
    for number, raw in enumerate(text.splitlines(), 1):
        bad = lambda why: train.UsageError(f"{name}:{number}: {why}")
        if len(raw) > MAX_LINE:
            raise bad(f"a line of {len(raw):,} characters (at most {MAX_LINE:,})")
        head, _, rest = raw.strip().partition(" ")
        if not head.isdigit() or not rest.strip():
            raise bad(f"expected 'ID text', got {raw[:80]!r}")
        i = int(head)
        if i == 1:
            stories.append([])
        elif not stories or i != len(stories[-1]) + 1:
            raise bad(f"id {i} does not continue its story")
        elif i > MAX_STORY:
            raise bad(f"a story longer than {MAX_STORY} lines")
        story = stories[-1]
        if "\t" not in rest:
            story.append(Line(rest.strip()))
        else:
            fields = [field.strip() for field in rest.split("\t")]
            if len(fields) != 3 or not fields[0] or not fields[1] or len(fields[1].split()) > 1:
                raise bad("expected 'ID question<TAB>one-word answer<TAB>supporting ids'")
            if i == 1:
                raise bad("a story opens with a question: there is nothing to answer it from")
            if not fields[2] or not all(s.isdigit() for s in fields[2].split()):
                raise bad(f"supporting ids must be line numbers, got {fields[2]!r}")
            support = tuple(int(s) for s in fields[2].split())
            if any(not 1 <= s < i or story[s - 1].answer is not None for s in support):
                raise bad("a supporting id is not an earlier statement of the story")
            story.append(Line(fields[0], fields[1], support))
        if len(words(story[-1].text)) > MAX_WORDS:
            raise bad(f"more than {MAX_WORDS} words in a sentence")
    return stories


def words(text):
    return text.lower().replace(".", " ").replace("?", " ").split()


def to_examples(stories):
    """One Example per question."""
    examples = []
    for story in stories:
        memory, index = [], {}
        for i, line in enumerate(story, 1):
            if line.answer is None:
                index[i] = len(memory)
                memory.append(words(line.text))
            else:
                examples.append(Example(list(memory), words(line.text), line.answer.lower(),
                                            [index[s] for s in line.support]))
    return examples


def vocabulary(*example_lists):
    """Every word of the examples, sorted, after the null word (id 0)."""
    words = {w for examples in example_lists for e in examples
             for w in [*e.question, e.answer, *(w for s in e.memory for w in s)]}
    return [NULL] + sorted(words)


def to_tensors(examples, vocab, memory_size=MEMORY):
    """story [N, M, J] (the memory_size latest statements, oldest first, null rows after), query
    [N, J] and answer [N] as word ids. Unknown words map to the null word."""
    ids = {w: i for i, w in enumerate(vocab)}
    memories = [e.memory[-memory_size:] for e in examples]
    M = max(1, max(len(m) for m in memories))
    J = max([len(e.question) for e in examples] + [len(s) for m in memories for s in m])
    story = np.zeros((len(examples), M, J), dtype=np.int64)
    query = np.zeros((len(examples), J), dtype=np.int64)
    for n, (e, memory) in enumerate(zip(examples, memories)):
        for i, sentence in enumerate(memory):
            story[n, i, : len(sentence)] = [ids.get(w, 0) for w in sentence]
        query[n, : len(e.question)] = [ids.get(w, 0) for w in e.question]
    answer = torch.tensor([ids.get(e.answer, 0) for e in examples])
    return torch.from_numpy(story), torch.from_numpy(query), answer


def read(folder, task, split):
    """The examples of the real bAbI file qa{task}_*_{split}.txt under folder."""
    names = sorted(glob.glob(os.path.join(glob.escape(folder), f"qa{task}_*_{split}.txt")))
    if not names:
        raise train.UsageError(f"--data {folder}: no file qa{task}_*_{split}.txt there")
    path = names[0]
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as error:
        raise train.UsageError(f"--data: cannot read {path}: {error}")
    examples = to_examples(parse(text, path))
    if not examples:
        raise train.UsageError(f"--data: {path} holds no questions")
    return examples
