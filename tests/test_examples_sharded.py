"""Smoke test of examples/sharded_population.py: run as a script, at a small
size, on one CPU (the example forces 4 host devices itself)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "sharded_population.py"


def test_the_example_runs_on_one_cpu_and_every_way_spikes_alike():
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS" and "proxy" not in k.lower()}
    env["JAX_PLATFORMS"] = "cpu"
    small = ["--neurons", "64", "--inputs", "16", "--steps", "200"]
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), *small],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "1 process(es), 4 device(s)" in out, out
    for way in ("state_shardings", "shard_map"):
        assert f"{way}: the same spikes as one device: True" in out, out
    counts = {
        line.split(":")[0].strip(): line.split(":")[1].split("spikes")[0].strip()
        for line in out.splitlines()
        if "spikes in 200 steps" in line
    }
    assert set(counts) == {"one device", "state_shardings", "shard_map"}, out
    assert len(set(counts.values())) == 1 and counts["one device"] != "0", out
