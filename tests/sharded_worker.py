"""One process of the model-parallel simulation in ``tests/test_sharded_population.py``.

Not a test module: ``test_sharded_population.py`` starts one of these per process, e.g.::

    XLA_FLAGS=--xla_force_host_platform_device_count=2 JAX_PLATFORMS=cpu \\
        python tests/sharded_worker.py --coordinator 127.0.0.1:12345 \\
        --num-processes 2 --process-id 0 --problem problem.npz --out out0.npz

It reads the input weights and input spikes from ``--problem``, splits a LIF
population (``V``) and its input weights along the neuron axis over a mesh
of every device of every process, and runs the simulation of
``examples/sharded_population.py`` ``--calls`` times in a row (each call a
``ps.compile.scan`` over all the input steps, the states carried over), with
``state_shardings`` and/or ``shard_map`` (``--modes``). It writes the blocks
of the spike raster and of the final ``V`` that this process holds, keyed by
their first neuron (``{mode}/raster/{start}``, ``{mode}/V/{start}``), and the
population activity per step (``{mode}/active``, replicated).
``--die-at-call K`` makes this process exit abruptly before call K
(``--die-by exit``) or stop dead without exiting (``--die-by freeze``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import brainunit as u
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import sharded_population as sp
from _cluster import add_cluster_args, connect, die

import purestate as ps


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_cluster_args(parser)
    parser.add_argument("--problem", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--modes", default="state_shardings,shard_map")
    parser.add_argument("--calls", type=int, default=1)
    parser.add_argument("--die-at-call", type=int, default=None)
    parser.add_argument("--die-by", choices=["exit", "freeze"], default="exit")
    return parser.parse_args(argv)


def blocks(array: jax.Array, axis: int) -> dict[int, np.ndarray]:
    """This process's blocks of `array` split along `axis`: {first index: block}."""
    return {
        shard.index[axis].start or 0: np.asarray(shard.data)
        for shard in array.addressable_shards
        if shard.replica_id == 0
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    name = connect(args)

    problem = dict(np.load(args.problem))
    neurons = problem["w_in"].shape[1]
    lif = ps.nn.LIF(neurons)
    mesh = Mesh(np.array(jax.devices()), (sp.AXIS,))
    spikes_in = sp.global_array(problem["spikes_in"], NamedSharding(mesh, P()))
    with_shardings, shardings = sp.with_state_shardings(lif, mesh)
    runs = {"state_shardings": with_shardings, "shard_map": sp.with_shard_map(lif, mesh)}

    results: dict[str, np.ndarray] = {"meta/device_count": np.array(jax.device_count())}
    for mode in args.modes.split(","):
        simulate = runs[mode]
        states = sp.init_states(lif, problem["w_in"], shardings)
        rasters, actives = [], []
        start = time.perf_counter()
        with ps.environ.context(dt=sp.DT):
            for call in range(args.calls):
                if call == args.die_at_call:
                    # Between two calls: every collective of this process is done.
                    jax.block_until_ready(states)
                    die(args.die_by, f"{name}: {args.die_by} before {mode} call {call}")
                (raster, active), states = simulate(states, spikes_in)
                active = np.asarray(active.addressable_data(0))
                print(f"{name}: {mode} call {call}: {int(active.sum())} spikes", flush=True)
                rasters.append(raster)
                actives.append(active)
        print(f"{name}: {mode} done in {time.perf_counter() - start:.2f} s", flush=True)
        V = u.get_mantissa(ps.get(states, "lif/V"))
        assert V.sharding.is_equivalent_to(shardings["lif/V"], 1), V.sharding
        assert ps.get(states, "w_in").sharding.is_equivalent_to(shardings["w_in"], 2)
        for first, block in blocks(V, 0).items():
            results[f"{mode}/V/{first}"] = block
        raster_blocks = [blocks(r, 1) for r in rasters]
        for first in raster_blocks[0]:
            results[f"{mode}/raster/{first}"] = np.concatenate([b[first] for b in raster_blocks])
        results[f"{mode}/active"] = np.concatenate(actives)
    np.savez(args.out, **results)


if __name__ == "__main__":
    main()
