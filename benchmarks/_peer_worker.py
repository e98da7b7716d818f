"""brainstate 0.6.0, timed in its own process.

brainstate 0.6.0 needs Python 3.12, and so its own environment with its own
jax: the one ``bench_coba.py --setup`` builds (made here with its
`setup_envs` when missing). Each case module's ``measure(quick, names)`` runs
there on ``("raw JAX", "brainstate")``, both timed in that one process in
interleaved rounds, so brainstate's ratio is to raw JAX on that environment's
jax. `with_brainstate` adds those rows, as column `PEER`, to the rows the
module measures here.

Worker: ``ENV/bin/python benchmarks/_peer_worker.py MODULE [--quick]`` prints
``ROWS <json>``.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from _harness import BASELINE, Row
from _models import STATE_TREE

HERE = Path(__file__).resolve().parent
ENVS = Path("/tmp/purestate_bench_envs")  # bench_coba.py's default --envs
PYTHON = ENVS / "brainpy" / "bin" / "python"
VERSION = "0.6.0"
PEER = f"brainstate {VERSION}"
LOCAL = (BASELINE, "purestate", STATE_TREE, "Flax NNX", "Equinox")
REMOTE = (BASELINE, "brainstate")
NO_ENV = "no Python 3.12 env: run benchmarks/bench_coba.py --setup"


@functools.cache
def environment() -> dict[str, str]:
    """``{"jax": version}`` of the Python 3.12 environment, or ``{"error": why}``."""
    if not PYTHON.exists():
        try:
            from bench_coba import setup_envs

            setup_envs(ENVS)
        except (Exception, SystemExit) as err:  # no Python 3.12, no network, ...
            print(f"could not build the Python 3.12 env: {err}", file=sys.stderr)
            return {"error": NO_ENV}
    query = "import brainstate, jax; print(brainstate.__version__, jax.__version__)"
    proc = subprocess.run([str(PYTHON), "-c", query], capture_output=True, text=True)
    if proc.returncode:
        return {"error": f"{PYTHON} cannot import brainstate and jax"}
    found, jax_version = proc.stdout.split()[-2:]
    if found != VERSION:
        return {"error": f"the Python 3.12 env has brainstate {found}, not {VERSION}"}
    return {"jax": jax_version}


def describe() -> str:
    """For the versions line of the results."""
    env = environment()
    if "error" in env:
        return f"{PEER} (n/a: {env['error']})"
    return f"{PEER} on jax {env['jax']} (its own Python 3.12 process)"


def remote_rows(module: str, quick: bool) -> list[Row] | str:
    """brainstate's rows of `module`, measured in its own process, or why not."""
    env = environment()
    if "error" in env:
        return env["error"]
    cmd = [str(PYTHON), str(HERE / "_peer_worker.py"), module, *(["--quick"] if quick else [])]
    environ = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=environ, timeout=3600)
    except subprocess.TimeoutExpired:
        return "its process ran over an hour"
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("ROWS "):
            rows = [Row(**r) for r in json.loads(line.removeprefix("ROWS "))]
            note = f"own process, jax {env['jax']}"
            return [
                dataclasses.replace(r, impl=PEER, note=r.note or note)
                for r in rows
                if r.impl == "brainstate"
            ]
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
    return f"its process failed: {' '.join(tail)[-200:]}"


def with_brainstate(measure: Callable[[bool, tuple], list[Row]], quick: bool) -> list[Row]:
    """``measure(quick, LOCAL)`` here, with brainstate's rows from its own process."""
    rows = measure(quick, LOCAL)
    module = Path(sys.modules[measure.__module__].__file__).stem
    peer = remote_rows(module, quick)
    if isinstance(peer, str):
        peer = [Row(case, PEER, None, note=peer) for case in dict.fromkeys(r.case for r in rows)]
    order = {case: i for i, case in enumerate(dict.fromkeys(r.case for r in rows + peer))}
    return sorted(rows + peer, key=lambda r: order[r.case])


if __name__ == "__main__":
    case_module = importlib.import_module(sys.argv[1])
    measured = case_module.measure("--quick" in sys.argv, REMOTE)
    print("ROWS " + json.dumps([dataclasses.asdict(r) for r in measured]), flush=True)
