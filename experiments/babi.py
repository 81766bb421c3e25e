"""bAbI tasks 1-3 (Weston et al. 2015, arXiv 1502.05698): a generator of stories and questions, and a
reader of the official files. Used by the MemN2N experiment (experiments/memn2n_experiment.py)."""
import glob
import os
from typing import NamedTuple

import numpy as np
import torch

import train  # train.UsageError: a bad data file is one line and exit 2

# ---------------------------------------------------------------------------------------------
# The task: bAbI-style stories. Weston et al.'s bAbI tasks 1-3 (arXiv 1502.05698), regenerated from
# their world: four actors move between six locations and pick up and drop three objects, and every few
# statements a question asks about the world. Task 1, "Where is Mary?", needs the actor's latest move (one
# supporting fact); task 2, "Where is the milk?", who got or dropped it and where that actor was (two);
# task 3, "Where was the milk before the office?", who carried it and that actor's last two moves (three).
# Every other statement is a distractor; a question's memory is the statements of its story before it.
# Five questions a story, each with its supporting facts among its 50 latest statements. The official
# text format (--data DIR reads the real files):
#     1 Mary moved to the bathroom.
#     2 Mary got the football there.
#     3 Where is the football? <TAB>bathroom<TAB>2 1      (answer, then the supporting line ids)
# ---------------------------------------------------------------------------------------------

ACTORS = ("John", "Mary", "Sandra", "Daniel")
LOCATIONS = ("bedroom", "kitchen", "garden", "hallway", "bathroom", "office")
OBJECTS = ("apple", "football", "milk")
MOVE = ("moved to", "went to", "went back to", "journeyed to", "travelled to")
GET = ("got", "grabbed", "picked up", "took")
DROP = ("dropped", "discarded", "put down", "left")
TASKS = {1: "single-supporting-fact", 2: "two-supporting-facts", 3: "three-supporting-facts"}
GAP = {1: (2, 2), 2: (1, 6), 3: (4, 20)}  # statements before each question (task 1: as the real data)
QUESTIONS_PER_STORY = 5
MEMORY = 50  # supporting facts are always among a question's 50 latest statements
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


class _World:
    """The world a story has told so far, with the line that established each fact."""

    def __init__(self, task, rng):
        self.task, self.rng, self.lines = task, rng, []
        self.place = {}    # actor -> (location, line of the move that put them there)
        self.holder = {}   # object -> (actor, line where they got it)
        self.lying = {}    # object -> (location, drop line, the dropper's move line)
        self.carried = {}  # object -> (from, to, support): its latest carried move

    def pick(self, options):
        return options[int(self.rng.integers(len(options)))]

    def say(self, text):
        self.lines.append(Line(text))
        return len(self.lines)

    def move(self):
        actor = self.pick(ACTORS)
        here, moved_at = self.place.get(actor, (None, None))
        there = self.pick([loc for loc in LOCATIONS if loc != here])
        line = self.say(f"{actor} {self.pick(MOVE)} the {there}.")
        for obj, (who, got_at) in self.holder.items():
            if who == actor:  # the object travels with its carrier
                self.carried[obj] = (here, there, (got_at, moved_at, line))
        self.place[actor] = (there, line)

    def get(self):
        here = {actor: location for actor, (location, _) in self.place.items()}
        options = [(actor, obj) for actor in ACTORS if actor in here for obj in OBJECTS
                   if obj not in self.holder and self.lying.get(obj, (here[actor],))[0] == here[actor]]
        if not options:
            return self.move()
        actor, obj = self.pick(options)
        there = " there" if self.rng.random() < 0.5 else ""
        self.holder[obj] = (actor, self.say(f"{actor} {self.pick(GET)} the {obj}{there}."))
        self.lying.pop(obj, None)

    def drop(self):
        if not self.holder:
            return self.move()
        obj = self.pick(sorted(self.holder))
        actor, _ = self.holder.pop(obj)
        there = " there" if self.rng.random() < 0.5 else ""
        line = self.say(f"{actor} {self.pick(DROP)} the {obj}{there}.")
        location, moved_at = self.place[actor]
        self.lying[obj] = (location, line, moved_at)

    def event(self):
        if self.task == 1:
            return self.move()
        r = self.rng.random()
        return self.move() if r < 0.5 else self.get() if r < 0.75 else self.drop()

    def questions(self):
        """Every question the story can answer now: (text, answer, supporting line ids)."""
        if self.task == 1:
            found = [(f"Where is {a}?", loc, (line,)) for a, (loc, line) in self.place.items()]
        elif self.task == 2:
            found = [(f"Where is the {obj}?", self.place[actor][0], (got_at, self.place[actor][1]))
                     for obj, (actor, got_at) in self.holder.items()]
            found += [(f"Where is the {obj}?", loc, (dropped_at, moved_at))
                      for obj, (loc, dropped_at, moved_at) in self.lying.items()]
        else:
            found = [(f"Where was the {obj} before the {to}?", frm, support)
                     for obj, (frm, to, support) in self.carried.items()]
        statements = [i for i, line in enumerate(self.lines, 1) if line.answer is None]
        window = set(statements[-MEMORY:])
        return [q for q in found if set(q[2]) <= window]


def story(task, rng, n_questions=QUESTIONS_PER_STORY):
    """One story of bAbI task 1, 2 or 3: a list of Line, statements and questions."""
    if task not in TASKS:
        raise ValueError(f"bAbI task must be one of {sorted(TASKS)}, got {task}")
    world = _World(task, rng)
    lo, hi = GAP[task]
    for _ in range(n_questions):
        for _ in range(int(rng.integers(lo, hi + 1))):
            world.event()
        while not (options := world.questions()):
            world.event()
        world.lines.append(Line(*world.pick(options)))
    return world.lines


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
