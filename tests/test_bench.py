"""bench.py's command line: bad input is one line and exit code 2 (its tables are measured, not tested)."""
import pytest

import bench


@pytest.mark.parametrize("argv, complaint", [
    (["--sizes", "1"], "--sizes"),
    (["--sizes", "4", "99999999"], "--sizes"),
    (["--repeats", "0"], "--repeats"),
    (["--seconds-per-cell", "nan"], "--seconds-per-cell"),
    (["--seconds-per-cell", "1e9"], "--seconds-per-cell"),
    (["--max-gb", "-1"], "--max-gb"),
    (["--threads", "x"], "--threads"),
    (["--device", "tpu"], "--device"),
])
def test_bad_input_is_one_line_and_exit_code_2(capsys, argv, complaint):
    with pytest.raises(SystemExit) as stop:
        bench.main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2
    assert len(err.strip().splitlines()) == 1 and complaint in err and "Traceback" not in err
