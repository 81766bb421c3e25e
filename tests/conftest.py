"""Shared test helpers: run train.py's command line in-process and read its result line."""
import importlib.util
import json

import pytest
import torch

import train

# matplotlib is optional: a test asserts a PNG only where it is installed, the terminal picture always
HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


# the tests' models are tiny: one thread is faster than two fighting over a busy 2-core machine
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


@pytest.fixture
def run_train(capsys):
    """run_train("transformer", "--steps", "5") -> (exit code, stdout, stderr)."""
    def run(*argv):
        code = train.main([str(a) for a in argv])
        captured = capsys.readouterr()
        single = not {"--compare", "--seeds"} & set(map(str, argv))
        if code == 0 and single:  # the contract: a single run's last line is its result line
            assert captured.out.strip().splitlines()[-1].startswith("result: ")
        return code, captured.out, captured.err
    return run


def result_lines(stdout):
    """Every `result: {json}` line of a run, parsed."""
    return [json.loads(line[len("result: "):]) for line in stdout.splitlines()
            if line.startswith("result: ")]


def check_result(result, experiment):
    """The result object has the contract's keys and types."""
    assert result["experiment"] == experiment
    for key in ("task", "variant", "device"):
        assert isinstance(result[key], str)
    assert isinstance(result["steps"], int) and result["steps"] > 0
    assert isinstance(result["seconds"], float | int)
    assert isinstance(result["solved"], bool)
    assert isinstance(result["metrics"], dict) and result["metrics"]
