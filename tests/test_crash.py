"""The crash test of benchmarks/crash_test.py, short: two SIGKILLs of a small `sdn train`."""

import importlib.util
import re
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "crash_test.py"


@pytest.mark.slow
def test_killed_and_resumed_training_ends_bit_for_bit_like_the_uninterrupted_run(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("crash_test", SCRIPT)
    crash_test = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(crash_test)
    code = crash_test.main(["--kills", "2", "--out", str(tmp_path / "work"), "--demo-every", "18", "--batch-size", "18",
                            "--fc-dim", "32", "--stage1-epochs", "1", "--stage2-epochs", "1", "--checkpoint-every", "1",
                            "--kill-while-saving-every", "2"])  # the second kill lands inside a checkpoint write
    out = capsys.readouterr().out
    assert code == 0, out
    assert "weights equal to the uninterrupted run bit for bit: True" in out
    assert re.search(r"2 SIGKILLs \([12] left a half-written checkpoint behind\)", out), out
