"""Model parallelism: one LIF population split over devices along its neurons.

A population of ``--neurons`` LIF neurons is driven by ``--inputs`` input spike
trains through a weight matrix of shape (inputs, neurons). The membrane
potentials ``V`` (neurons,) and the weights are split along the neuron axis,
so each device holds and updates only its own neurons and their weights;
the population activity (how many neurons spike per step) is summed over all
devices. The simulation is run three ways, all giving the same spikes:

* on one device, unsplit (the reference);
* ``state_shardings``: `ps.compile.jit` places the states by selector on a
  `Mesh` of all devices, and XLA splits the computation (and inserts the sum);
* ``shard_map``: `ps.augment.shard_map` runs the simulation once per device
  on its block of neurons (``state_specs`` by selector), with an explicit
  ``jax.lax.psum`` for the population activity.

One process on the CPU: 4 host devices are forced unless ``XLA_FLAGS``
already sets a count (this must happen before JAX is imported)::

    python examples/sharded_population.py

One host with several GPUs (one process drives all of them)::

    python examples/sharded_population.py

Several hosts, one process per host; process 0's host (here 10.0.0.1) runs
the coordinator on a port of your choice. Flags or environment variables::

    python examples/sharded_population.py --coordinator 10.0.0.1:1234 --num-processes 2 --process-id 0
    JAX_COORDINATOR_ADDRESS=10.0.0.1:1234 NUM_PROCESSES=2 PROCESS_ID=1 \\
        python examples/sharded_population.py

Under Slurm or Open MPI, ``--auto`` lets ``jax.distributed.initialize()``
read all three from the scheduler. Two CPU processes on one machine, each
with 2 devices (the several-hosts path, collectives over TCP with gloo)::

    for i in 0 1; do
      XLA_FLAGS=--xla_force_host_platform_device_count=2 JAX_PLATFORMS=cpu \\
        python examples/sharded_population.py --coordinator 127.0.0.1:1234 \\
          --num-processes 2 --process-id $i &
    done; wait

``--neurons`` must be a multiple of the number of devices.
"""

from __future__ import annotations

import os

if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    # Split the CPU into 4 devices; set before JAX is imported. (On a GPU host
    # JAX uses the GPUs, and this flag changes nothing.)
    flags = os.environ.get("XLA_FLAGS", "")
    os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count=4".strip()

import argparse
import time
from collections.abc import Callable, Sequence
from typing import Any

import brainunit as u
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import purestate as ps

AXIS = "neurons"
DT = 0.1 * u.ms
States = dict[str, Any]


def make_problem(neurons: int, inputs: int, steps: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Input weights (about 1.2 mA of mean input current per neuron) and
    input spike trains (rate 0.1 per step), the same in every process. The
    weights are multiples of 2**-10 and the inputs 0 or 1, so the currents
    are exact in float32 whatever order a device sums them in."""
    rng = np.random.default_rng(seed)
    w_in = rng.normal(1.0, 1.0, size=(inputs, neurons)) * 12 / inputs
    return {
        "w_in": (np.round(w_in * 1024) / 1024).astype(np.float32),
        "spikes_in": (rng.random((steps, inputs)) < 0.1).astype(np.float32),
    }


def global_array(data: np.ndarray, sharding: jax.sharding.Sharding | None) -> jax.Array:
    """One (global) array with `sharding`, each process filling in only the
    blocks its devices hold (in a real job, loaded or initialised per block)."""
    if sharding is None:
        return jnp.asarray(data)
    return jax.make_array_from_callback(data.shape, sharding, lambda index: data[index])


def init_states(lif: ps.nn.LIF, w_in: np.ndarray, shardings: dict | None = None) -> States:
    """``{'lif': {'V': ShortTermState (neurons,)}, 'w_in': ParamState (inputs, neurons)}``."""
    shardings = shardings or {}
    V = np.asarray(u.get_mantissa(ps.get(lif.init(), "V")))
    return {
        "lif": {"V": ps.ShortTermState(global_array(V, shardings.get("lif/V")) * u.mV)},
        "w_in": ps.ParamState(global_array(w_in, shardings.get("w_in"))),
    }


def make_simulate(lif: ps.nn.LIF, axis_name: str | None = None) -> Callable:
    """``simulate(states, spikes_in) -> ((raster, activity), states)``: the
    spike raster (steps, neurons) and the number of neurons spiking per step.
    With `axis_name`, the function sees one block of neurons and sums the
    activity over the blocks."""

    def step(states: States, x: jax.Array) -> tuple[Any, States]:
        current = x @ states["w_in"].value * u.mA
        spikes, lif_states = lif(states["lif"], current)
        active = spikes.sum()
        if axis_name is not None:
            active = jax.lax.psum(active, axis_name)
        return (spikes, active), {**states, "lif": lif_states}

    def simulate(states: States, spikes_in: jax.Array) -> tuple[Any, States]:
        return ps.compile.scan(step, states, spikes_in)

    return simulate


def with_state_shardings(lif: ps.nn.LIF, mesh: Mesh) -> tuple[Callable, dict]:
    """The plain simulation, compiled with the states placed by selector."""
    shardings = {
        "lif/V": NamedSharding(mesh, P(AXIS)),  # V: (neurons,)
        "w_in": NamedSharding(mesh, P(None, AXIS)),  # weights: (inputs, neurons)
    }
    simulate = ps.compile.jit(
        make_simulate(lif),
        state_shardings=shardings,
        out_shardings=(NamedSharding(mesh, P(None, AXIS)), NamedSharding(mesh, P())),
    )
    return simulate, shardings


def with_shard_map(lif: ps.nn.LIF, mesh: Mesh) -> Callable:
    """The per-block simulation under shard_map (compiled with jit)."""
    simulate = ps.augment.shard_map(
        make_simulate(lif, axis_name=AXIS),
        mesh=mesh,
        in_specs=P(),  # every device sees all the input spikes
        out_specs=(P(None, AXIS), P()),  # raster split by neurons; activity summed
        state_specs={"lif/V": P(AXIS), "w_in": P(None, AXIS)},
    )
    return ps.compile.jit(simulate)


def local_columns(raster: jax.Array) -> np.ndarray:
    """The columns (neurons) of a raster that this process holds, in order."""
    blocks = {s.index[1].start or 0: s.data for s in raster.addressable_shards if s.replica_id == 0}
    return np.concatenate([np.asarray(blocks[k]) for k in sorted(blocks)], axis=1)


def join_job(args: argparse.Namespace) -> None:
    """Join a job of several processes; call before any other JAX call."""
    if args.auto:
        jax.distributed.initialize()  # Slurm, Open MPI, ... tell JAX everything
    elif args.coordinator:
        jax.distributed.initialize(
            args.coordinator,  # "host:port" of process 0, the same in every process
            num_processes=args.num_processes,
            process_id=args.process_id,
            heartbeat_timeout_seconds=10,  # a silent process counts as dead after 10 s
        )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    env = os.environ.get
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--neurons", type=int, default=4096)
    parser.add_argument("--inputs", type=int, default=100)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--coordinator", default=env("JAX_COORDINATOR_ADDRESS"))
    parser.add_argument("--num-processes", type=int, default=int(env("NUM_PROCESSES", "1")))
    parser.add_argument("--process-id", type=int, default=int(env("PROCESS_ID", "0")))
    parser.add_argument("--auto", action="store_true", help="jax.distributed.initialize()")
    args = parser.parse_args(argv)

    join_job(args)
    log = print if jax.process_index() == 0 else lambda *_: None
    devices = jax.devices()
    log(f"{jax.process_count()} process(es), {len(devices)} device(s): {devices}")
    if args.neurons % len(devices):
        parser.error(f"--neurons must be a multiple of the {len(devices)} devices")

    problem = make_problem(args.neurons, args.inputs, args.steps)
    lif = ps.nn.LIF(args.neurons)
    mesh = Mesh(np.array(devices), (AXIS,))
    spikes_in = global_array(problem["spikes_in"], NamedSharding(mesh, P()))
    sharded, shardings = with_state_shardings(lif, mesh)
    runs = {"state_shardings": sharded, "shard_map": with_shard_map(lif, mesh)}

    results = {}
    with ps.environ.context(dt=DT):
        if jax.process_count() == 1:  # the unsplit reference needs every neuron here
            states = init_states(lif, problem["w_in"])
            runs = {"one device": ps.compile.jit(make_simulate(lif)), **runs}
        for name, simulate in runs.items():
            if name != "one device":
                states = init_states(lif, problem["w_in"], shardings)
            start = time.perf_counter()
            (raster, active), states = jax.block_until_ready(simulate(states, spikes_in))
            seconds = time.perf_counter() - start  # compilation included
            results[name] = (local_columns(raster), np.asarray(active.addressable_data(0)))
            log(
                f"{name:>16}: {int(results[name][1].sum()):,} spikes in {args.steps:,} steps "
                f"of {args.neurons:,} neurons ({seconds:.2f} s with compilation)"
            )
    first, (raster0, active0) = next(iter(results.items()))
    for name, (raster, active) in list(results.items())[1:]:
        same = np.array_equal(raster, raster0) and np.array_equal(active, active0)
        log(f"{name:>16}: the same spikes as {first}: {same}")
    return results


if __name__ == "__main__":
    main()
