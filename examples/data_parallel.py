"""Data-parallel training with purestate, from one CPU to several hosts.

The training step below is written once and runs unchanged on one CPU, on all
the GPUs of one host and on several hosts; only the launch command differs.
Two ways of splitting a batch over devices are shown:

* ``pmap``: `ps.augment.pmap` runs the step once per local device, each on
  its slice of the batch, and ``jax.lax.pmean`` averages the gradients over
  every device of every process;
* ``jit``: `ps.compile.jit` with ``state_shardings`` places the states
  (replicated) on a global `jax.sharding.Mesh`, the batch is one global array
  sharded along the mesh, and XLA inserts the gradient all-reduce itself.

Both equal one step of full-batch gradient descent on one device.

One process on the CPU, with 4 simulated devices::

    XLA_FLAGS=--xla_force_host_platform_device_count=4 JAX_PLATFORMS=cpu \\
        python examples/data_parallel.py

One host with several GPUs (one process drives all of them)::

    python examples/data_parallel.py

Several hosts, one process per host; process 0's host (here 10.0.0.1) runs
the coordinator on a port of your choice::

    python examples/data_parallel.py --coordinator 10.0.0.1:1234 --num-processes 2 --process-id 0  # host 0
    python examples/data_parallel.py --coordinator 10.0.0.1:1234 --num-processes 2 --process-id 1  # host 1

Two CPU processes on one machine, each with 2 devices (the several-hosts path,
collectives over TCP with gloo)::

    for i in 0 1; do
      XLA_FLAGS=--xla_force_host_platform_device_count=2 JAX_PLATFORMS=cpu \\
        python examples/data_parallel.py --coordinator 127.0.0.1:1234 \\
          --num-processes 2 --process-id $i &
    done; wait
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import purestate as ps

States = dict[str, Any]
AXIS = "batch"


def join_job(coordinator: str, num_processes: int, process_id: int) -> None:
    """Join a job of several processes; call before any other JAX call."""
    jax.distributed.initialize(
        coordinator,  # "host:port" of process 0, the same in every process
        num_processes=num_processes,
        process_id=process_id,
        # A process that sends no heartbeat for 10 s counts as dead, and the
        # others stop with an error (JAX's default is 100 s).
        heartbeat_timeout_seconds=10,
        shutdown_timeout_seconds=30,
    )


def init_states(key: jax.Array, sizes: Sequence[int] = (3, 16, 2)) -> States:
    """A two-layer perceptron: ``{'hidden': {...}, 'out': {...}}``, each with
    ``weight`` of shape (in, out) and ``bias`` of shape (out,)."""
    k_hidden, k_out = jax.random.split(key)
    n_in, n_hidden, n_out = sizes

    def dense(k: jax.Array, n_in: int, n_out: int) -> States:
        weight = jax.random.normal(k, (n_in, n_out)) * np.sqrt(2.0 / n_in)
        return {"weight": ps.ParamState(weight), "bias": ps.ParamState(jnp.zeros(n_out))}

    return {"hidden": dense(k_hidden, n_in, n_hidden), "out": dense(k_out, n_hidden, n_out)}


def predict(states: States, x: jax.Array) -> jax.Array:
    h = jnp.tanh(x @ ps.get(states, "hidden/weight") + ps.get(states, "hidden/bias"))
    return h @ ps.get(states, "out/weight") + ps.get(states, "out/bias")


def loss_fn(states: States, x: jax.Array, y: jax.Array) -> tuple[jax.Array, States]:
    """Mean squared error over the batch in hand (a stateful function)."""
    return jnp.mean((predict(states, x) - y) ** 2), states


def make_optimizer(learning_rate: float = 0.1, momentum: float = 0.9) -> Any:
    return ps.optim.Optimizer(optax.sgd(learning_rate, momentum=momentum), wrt=ps.ParamState)


def make_pmap_step(optimizer: Any) -> Callable:
    """``step(states, x, y) -> (loss, states)``; ``x``, ``y`` of shape
    ``(jax.local_device_count(), per_device_batch, ...)``, states replicated."""
    grad_fn = ps.augment.grad(loss_fn, ps.ParamState, return_value=True)

    def step(states: States, x: jax.Array, y: jax.Array) -> tuple[jax.Array, States]:
        (grads, loss), states = grad_fn(states, x, y)
        # Every device holds an equal slice, so the mean of the per-device
        # means is the mean over the global batch.
        grads, loss = jax.lax.pmean((grads, loss), AXIS)
        return loss, optimizer.update(states, grads)

    return ps.augment.pmap(step, axis_name=AXIS, out_axes=None)


def make_jit_step(optimizer: Any, mesh: Mesh) -> Callable:
    """``step(states, x, y) -> (loss, states)``; ``x``, ``y`` global arrays
    sharded along ``mesh``, states replicated on every device of ``mesh``."""
    grad_fn = ps.augment.grad(loss_fn, ps.ParamState, return_value=True)

    def step(states: States, x: jax.Array, y: jax.Array) -> tuple[jax.Array, States]:
        (grads, loss), states = grad_fn(states, x, y)
        return loss, optimizer.update(states, grads)

    return ps.compile.jit(step, state_shardings={...: NamedSharding(mesh, P())})


def global_mesh() -> Mesh:
    """All devices of all processes on one axis. `Mesh` keeps JAX's automatic
    sharding (``jax.make_mesh`` would default to explicit axes)."""
    return Mesh(np.array(jax.devices()), (AXIS,))


def pmap_batch(local: np.ndarray) -> np.ndarray:
    """This process's rows, split into one equal slice per local device."""
    return local.reshape(jax.local_device_count(), -1, *local.shape[1:])


def jit_batch(local: np.ndarray, mesh: Mesh) -> jax.Array:
    """One global array assembled from every process's rows (in process order)."""
    return jax.make_array_from_process_local_data(NamedSharding(mesh, P(AXIS)), local)


def process_rows(data: np.ndarray) -> np.ndarray:
    """The contiguous block of rows this process reads. In a real job each host
    would load only its own shard from storage."""
    rows = len(data) // jax.process_count()
    return data[jax.process_index() * rows : (jax.process_index() + 1) * rows]


def make_dataset(num_samples: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(num_samples, 3)).astype(np.float32)
    y = np.stack([np.sin(x.sum(1)), np.cos(x[:, 0] - x[:, 2])], axis=1).astype(np.float32)
    return x, y


def train(step: Callable, states: States, x: Any, y: Any, num_steps: int) -> States:
    for i in range(num_steps):
        loss, states = step(states, x, y)
        if jax.process_index() == 0 and (i % 10 == 0 or i == num_steps - 1):
            print(f"  step {i:3d}  loss {float(loss):.5f}")
    return states


def parameters(states: States) -> dict[str, np.ndarray]:
    """The parameters as host numpy arrays; they are replicated, so every
    process reads its first local copy."""
    params = ps.flatten(ps.select(states, ps.ParamState))
    return {"/".join(path): np.asarray(st.value.addressable_data(0)) for path, st in params.items()}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coordinator", help="host:port of process 0 (several processes only)")
    parser.add_argument("--num-processes", type=int, default=1)
    parser.add_argument("--process-id", type=int, default=0)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=64, help="global batch size")
    parser.add_argument("--mode", choices=["pmap", "jit", "both"], default="both")
    args = parser.parse_args(argv)

    if args.coordinator:
        join_job(args.coordinator, args.num_processes, args.process_id)
    if args.batch_size % jax.device_count():
        parser.error(f"--batch-size must be a multiple of {jax.device_count()} devices")
    log = print if jax.process_index() == 0 else lambda *_: None
    log(f"{jax.process_count()} process(es), {jax.device_count()} device(s): {jax.devices()}")

    x, y = make_dataset(args.batch_size)
    x, y = process_rows(x), process_rows(y)
    optimizer = make_optimizer()
    states = optimizer.init(init_states(jax.random.key(0)))

    results = {}
    if args.mode in ("pmap", "both"):
        log("pmap:")
        step = make_pmap_step(optimizer)
        results["pmap"] = train(step, states, pmap_batch(x), pmap_batch(y), args.steps)
    if args.mode in ("jit", "both"):
        log("jit with state_shardings:")
        mesh = global_mesh()
        step = make_jit_step(optimizer, mesh)
        results["jit"] = train(step, states, jit_batch(x, mesh), jit_batch(y, mesh), args.steps)
    if len(results) == 2:
        a, b = (parameters(s) for s in results.values())
        gap = max(float(np.max(np.abs(a[k] - b[k]))) for k in a)
        log(f"largest difference between the pmap and jit parameters: {gap:.2e}")


if __name__ == "__main__":
    main()
