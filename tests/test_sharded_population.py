"""Model parallelism across 2 processes with ``jax.distributed``.

A LIF population's membrane potentials ``V`` (neurons,) and its input weights
(inputs, neurons) are split along the neuron axis over 2 processes x 2 host
CPU devices (gloo collectives), and simulated for 1,000 steps with
``ps.compile.scan`` inside ``ps.compile.jit(state_shardings=...)``, and inside
``ps.augment.shard_map``: the steps of ``examples/sharded_population.py``, run
by ``tests/sharded_worker.py``. The spikes must be identical, bit for bit, to a
single-process run on one device here. A process that dies mid-run must make
the other exit with an error, not hang. The launch and wait helpers are those
of the data-parallel test, ``tests/test_distributed.py``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import brainunit as u
import numpy as np
import pytest
from _cluster import DIED_EXIT_CODE
from test_distributed import PEER_LOST, describe, wait_all
from test_distributed import launched as launched_workers

import purestate as ps

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("sharded_worker.py")
NUM_PROCESSES = 2  # of 2 devices each (worker_env)
NEURONS, INPUTS, STEPS = 256, 32, 1_000
MODES = ("state_shardings", "shard_map")

sys.path.insert(0, str(ROOT / "examples"))
import sharded_population as sp  # noqa: E402


def launched(tmp_path: Path, args_per_process: Sequence[Sequence[str]]):
    """The sharded workers, started and cleaned up as the data-parallel test's."""
    return launched_workers(tmp_path, args_per_process, WORKER)


def one_process_run(problem: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The reference: the whole population on one device of this process,
    no sharding, the same steps."""
    lif = ps.nn.LIF(NEURONS)
    simulate = ps.compile.jit(sp.make_simulate(lif))
    states = sp.init_states(lif, problem["w_in"])
    with ps.environ.context(dt=sp.DT):
        (raster, active), states = simulate(states, problem["spikes_in"])
    assert len(raster.devices()) == 1
    V = u.get_mantissa(ps.get(states, "lif/V"))
    return {"raster": np.asarray(raster), "active": np.asarray(active), "V": np.asarray(V)}


def assemble(outputs: list[dict], key: str, axis: int) -> np.ndarray:
    """The global array from every process's blocks ``key/{first index}``,
    checking that they tile the neuron axis exactly once."""
    found = {
        int(k.rsplit("/", 1)[1]): block
        for out in outputs
        for k, block in out.items()
        if k.startswith(f"{key}/")
    }
    starts = sorted(found)
    assert len(starts) == NUM_PROCESSES * 2, (key, starts)  # one block per device
    sizes = [found[s].shape[axis] for s in starts]
    assert starts == [sum(sizes[:i]) for i in range(len(starts))], (key, starts, sizes)
    assert sum(sizes) == NEURONS
    return np.concatenate([found[s] for s in starts], axis=axis)


def test_a_population_split_over_two_processes_spikes_as_on_one_device(tmp_path: Path) -> None:
    problem = sp.make_problem(NEURONS, INPUTS, STEPS)
    np.savez(tmp_path / "problem.npz", **problem)
    common = ["--problem", str(tmp_path / "problem.npz"), "--modes", ",".join(MODES)]
    args = [[*common, "--out", str(tmp_path / f"out{pid}.npz")] for pid in range(NUM_PROCESSES)]
    with launched(tmp_path, args) as procs:
        results = wait_all(procs, tmp_path, timeout=120)
    assert all(r.returncode == 0 for r in results.values()), describe(results)
    outputs = [dict(np.load(tmp_path / f"out{pid}.npz")) for pid in range(NUM_PROCESSES)]
    assert int(outputs[0]["meta/device_count"]) == 4

    want = one_process_run(problem)
    spikes = int(want["raster"].sum())
    assert 1_000 < spikes < 0.2 * NEURONS * STEPS, spikes  # it fires, but not always
    for mode in MODES:
        # Each process holds half of the neurons: the raster is split between them.
        held = [sum(k.startswith(f"{mode}/raster/") for k in out) for out in outputs]
        assert held == [2, 2], held
        raster = assemble(outputs, f"{mode}/raster", axis=1)
        assert raster.shape == (STEPS, NEURONS)
        np.testing.assert_array_equal(raster, want["raster"], err_msg=mode)
        np.testing.assert_array_equal(raster.sum(0), want["raster"].sum(0), err_msg=mode)
        for pid, out in enumerate(outputs):
            # The population activity is replicated: the same in every process.
            np.testing.assert_array_equal(out[f"{mode}/active"], want["active"], err_msg=str(pid))
        V = assemble(outputs, f"{mode}/V", axis=0)
        np.testing.assert_array_equal(V, want["V"], err_msg=mode)


HEARTBEAT_TIMEOUT = 5  # seconds; JAX's default is 100


@pytest.mark.parametrize(
    ("mode", "die_by"),
    [("state_shardings", "exit"), ("shard_map", "freeze")],
    ids=["state_shardings-worker-exits", "shard_map-worker-freezes"],
)
def test_a_process_dying_mid_simulation_stops_the_other_with_an_error(
    tmp_path: Path, mode: str, die_by: str
) -> None:
    """Process 1 goes away before call 3 of many (each call 50 steps, with a
    population sum over both processes at every step). Process 0 must fail,
    naming the lost peer, within the heartbeat timeout (plus start-up)."""
    np.savez(tmp_path / "problem.npz", **sp.make_problem(NEURONS, INPUTS, 50))
    common = ["--problem", str(tmp_path / "problem.npz"), "--modes", mode]
    common += ["--calls", "100000", "--heartbeat-timeout", str(HEARTBEAT_TIMEOUT)]
    args = [[*common, "--out", str(tmp_path / f"out{pid}.npz")] for pid in range(NUM_PROCESSES)]
    args[1] += ["--die-at-call", "3", "--die-by", die_by]
    with launched(tmp_path, args) as procs:
        results = wait_all(procs, tmp_path, timeout=45, only=[0])
        if die_by == "exit":
            results.update(wait_all(procs, tmp_path, timeout=5, only=[1]))
    if die_by == "exit":
        assert results[1].returncode == DIED_EXIT_CODE, describe(results)
    assert results[0].returncode != 0, describe(results)
    assert PEER_LOST.search(results[0].log), describe(results)
    assert f"{mode} call 2:" in results[0].log, describe(results)  # it did run
    assert "call 99999" not in results[0].log, describe(results)
