"""Smoke test of the main demo (examples/demo.py) in its quick mode."""

import importlib.util
import re
import sys
from pathlib import Path

import pytest

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo.py"


def test_quick_demo_learns_and_writes_its_figures(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("purestate_demo", DEMO)
    demo = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = demo  # dataclasses look their module up
    spec.loader.exec_module(demo)
    accuracy = demo.main(["--quick", "--out", str(tmp_path)])
    assert accuracy > 0.6  # chance is 0.1; two epochs reach about 0.9
    for name in ("training.png", "spikes.png"):
        assert (tmp_path / name).stat().st_size > 1000
    # The network reloaded from its checkpoint scores what the trained one did.
    reloaded = re.search(r"reloaded from disk: ([\d.]+)%", capsys.readouterr().out)
    assert reloaded and float(reloaded.group(1)) == round(100 * accuracy, 2)
    assert (tmp_path / "checkpoint").is_dir()
