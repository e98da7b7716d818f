"""A LIF population split by neuron over 1, 2 and 4 devices.

The population of ``examples/sharded_population.py``: 4,096 and 16,384 LIF
neurons fed by 100 input spike trains through a (100, neurons) weight
matrix, 1,000 steps of 0.1 ms in one compiled ``ps.compile.scan``, with the
population activity summed over the devices at every step. ``V`` and the
weights are split along the neuron axis with
``ps.compile.jit(state_shardings=...)`` and with ``ps.augment.shard_map``, on
meshes of the first 1, 2 and 4 devices, and compared with the same
simulation compiled without any sharding (one device). Every run must give
the unsharded run's spikes exactly. Throughput is neurons x steps per
second; the ratio is time over the unsharded run's (below 1: faster).

On a CPU the devices are forced host devices (``XLA_FLAGS``, set below before
JAX is imported), which share the machine's cores: the figures then measure
what splitting costs (a synchronisation of the devices at every step,
smaller pieces of work), not the speed-up of real devices. On a host with
several GPUs the same script splits over the GPUs.

Run: ``.venv/bin/python benchmarks/bench_sharded.py [--quick] [--neurons N ...]``.
"""

from __future__ import annotations

import os

if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    flags = os.environ.get("XLA_FLAGS", "")
    os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count=4".strip()

import argparse
import dataclasses
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np
from _harness import Row, compare, format_value
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import sharded_population as sp

import purestate as ps

TITLE = "LIF population split by neuron"
SIZES, INPUTS, STEPS = (4_096, 16_384), 100, 1_000
DEVICE_COUNTS = (1, 2, 4)
UNSHARDED = "unsharded"


def timed(simulate: Callable, states: dict, spikes_in: jax.Array) -> Callable[[], object]:
    def call() -> object:
        with ps.environ.context(dt=sp.DT):
            outputs, _ = simulate(states, spikes_in)
        return outputs  # (raster, activity): waited for together

    return call


def builders(neurons: int) -> dict[str, Callable[[], object] | str]:
    problem = sp.make_problem(neurons, INPUTS, STEPS)
    lif = ps.nn.LIF(neurons)
    impls: dict[str, Callable[[], object] | str] = {
        UNSHARDED: timed(
            ps.compile.jit(sp.make_simulate(lif)),
            sp.init_states(lif, problem["w_in"]),
            jax.numpy.asarray(problem["spikes_in"]),
        )
    }
    for count in DEVICE_COUNTS:
        for way in ("state_shardings", "shard_map"):
            name = f"{way}, {count} dev"
            if count > jax.device_count():
                impls[name] = f"only {jax.device_count()} device(s)"
                continue
            if neurons % count:
                impls[name] = f"{neurons} neurons do not split into {count}"
                continue
            mesh = Mesh(np.array(jax.devices()[:count]), (sp.AXIS,))
            spikes_in = sp.global_array(problem["spikes_in"], NamedSharding(mesh, P()))
            simulate, shardings = sp.with_state_shardings(lif, mesh)
            if way == "shard_map":
                simulate = sp.with_shard_map(lif, mesh)
            states = sp.init_states(lif, problem["w_in"], shardings)
            impls[name] = timed(simulate, states, spikes_in)
    return impls


def _same_spikes(outputs: dict) -> None:
    raster, active = (np.asarray(a) for a in outputs[UNSHARDED])
    assert active.sum() > 0, "the population does not fire"
    for name, (other_raster, other_active) in outputs.items():
        if not (np.array_equal(other_raster, raster) and np.array_equal(other_active, active)):
            raise AssertionError(f"{name}: other spikes than the unsharded run")


def run(quick: bool = False, sizes: tuple[int, ...] = SIZES) -> list[Row]:
    if jax.device_count() < max(DEVICE_COUNTS) and jax.default_backend() == "cpu":
        # JAX was imported (by run_all.py) before this module could force
        # host devices: measure in a fresh process that has them.
        return _run_in_subprocess(quick, sizes)
    rows = []
    for neurons in sizes:
        case = compare(
            f"LIF {neurons:,} neurons x {STEPS:,} steps, split by neuron",
            builders(neurons),
            rounds=3 if quick else 7,
            round_s=0.0,
            warmup=1,
            check=_same_spikes,
        )
        base = next(r.seconds for r in case if r.impl == UNSHARDED)
        for row in case:
            row.work = neurons * STEPS
            row.baseline = base
        rows += case
    return rows


def _run_in_subprocess(quick: bool, sizes: tuple[int, ...]) -> list[Row]:
    argv = [sys.executable, __file__, "--json", "--neurons", *map(str, sizes)]
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    done = subprocess.run(
        argv + (["--quick"] if quick else []), env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"{TITLE}: the benchmark process failed:\n{done.stderr[-2000:]}")
    return [Row(**fields) for fields in json.loads(done.stdout.splitlines()[-1])]


def markdown(rows: list[Row]) -> str:
    lines = [
        f"Up to {max(DEVICE_COUNTS)} {jax.default_backend()} devices (on a CPU: forced host "
        "devices sharing its cores); the time of one run and "
        "its ratio to the unsharded run of the same size:",
        "",
        "| case | run | time per run | neuron-steps/s | vs unsharded |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for row in rows:
        rate = "—" if row.rate is None else f"{row.rate:.3g}"
        ratio = row.note or f"{row.ratio:.2f}x"
        lines.append(f"| {row.case} | {row.impl} | {format_value(row)} | {rate} | {ratio} |")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=TITLE)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--neurons", type=int, nargs="+", default=SIZES)
    args = parser.parse_args()
    rows = run(quick=args.quick, sizes=tuple(args.neurons))
    print(json.dumps([dataclasses.asdict(r) for r in rows]) if args.json else markdown(rows))
