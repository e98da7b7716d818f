"""One process of the multi-process training in ``tests/test_distributed.py``.

Not a test module: ``test_distributed.py`` starts one of these per process, e.g.::

    XLA_FLAGS=--xla_force_host_platform_device_count=2 JAX_PLATFORMS=cpu \\
        python tests/distributed_worker.py --coordinator 127.0.0.1:12345 \\
        --num-processes 2 --process-id 0 --problem problem.npz --out out0.npz

It reads the global batch and the initial parameters from ``--problem``, trains
on its own rows with the steps of ``examples/data_parallel.py`` (``--impl
purestate``) or their plain-JAX counterparts (``--impl jax``, the harness's
control), and writes the final parameters to ``--out`` as ``{mode}/{path}``.
``--die-at-step K`` makes this process exit abruptly before step K (``--die-by
exit``) or stop dead without exiting, as a host that loses power or network
would (``--die-by freeze``: SIGSTOP to itself).
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import data_parallel as dp
from _cluster import add_cluster_args, connect, die

import purestate as ps

LEARNING_RATE = 0.1
MOMENTUM = 0.9


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_cluster_args(parser)
    parser.add_argument("--problem", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--impl", choices=["purestate", "jax"], default="purestate")
    parser.add_argument("--modes", default="pmap,jit")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--die-at-step", type=int, default=None)
    parser.add_argument("--die-by", choices=["exit", "freeze"], default="exit")
    return parser.parse_args(argv)


def state_tree(params: dict[str, np.ndarray]) -> dict[str, Any]:
    return ps.unflatten(
        {tuple(k.split("/")): ps.ParamState(jnp.asarray(v)) for k, v in params.items()}
    )


def purestate_steps(mesh: Any) -> tuple[Any, dict[str, Any]]:
    """The example's steps, and the initial states transform (optimizer init)."""
    optimizer = dp.make_optimizer(LEARNING_RATE, MOMENTUM)
    steps = {
        "pmap": lambda: dp.make_pmap_step(optimizer),
        "jit": lambda: dp.make_jit_step(optimizer, mesh),
    }
    return optimizer.init, steps


def jax_steps(mesh: Any) -> tuple[Any, dict[str, Any]]:
    """The same two steps in plain JAX and Optax on ``(params, opt_state)``."""
    tx = optax.sgd(LEARNING_RATE, momentum=MOMENTUM)

    def loss(params: Any, x: jax.Array, y: jax.Array) -> jax.Array:
        h = jnp.tanh(x @ params["hidden/weight"] + params["hidden/bias"])
        return jnp.mean((h @ params["out/weight"] + params["out/bias"] - y) ** 2)

    def apply(carry: Any, grads: Any) -> Any:
        params, opt_state = carry
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    @partial(jax.pmap, axis_name=dp.AXIS, in_axes=(None, 0, 0), out_axes=None)
    def pmap_step(carry: Any, x: jax.Array, y: jax.Array) -> Any:
        value, grads = jax.value_and_grad(loss)(carry[0], x, y)
        value, grads = jax.lax.pmean((value, grads), dp.AXIS)
        return value, apply(carry, grads)

    def jit_step(carry: Any, x: jax.Array, y: jax.Array) -> Any:
        value, grads = jax.value_and_grad(loss)(carry[0], x, y)
        return value, apply(carry, grads)

    replicated = NamedSharding(mesh, P())
    batch = NamedSharding(mesh, P(dp.AXIS))
    jit_step = jax.jit(jit_step, in_shardings=(replicated, batch, batch), out_shardings=replicated)
    steps = {"pmap": lambda: pmap_step, "jit": lambda: jit_step}
    return lambda params: (params, tx.init(params)), steps


def final_params(impl: str, carry: Any) -> dict[str, np.ndarray]:
    if impl == "jax":
        return {k: np.asarray(v.addressable_data(0)) for k, v in carry[0].items()}
    return dp.parameters(carry)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    name = connect(args)

    problem = dict(np.load(args.problem))
    x, y = dp.process_rows(problem.pop("x")), dp.process_rows(problem.pop("y"))
    mesh = dp.global_mesh()
    init, steps = (purestate_steps if args.impl == "purestate" else jax_steps)(mesh)
    initial = init(state_tree(problem) if args.impl == "purestate" else problem)
    batches = {
        "pmap": (dp.pmap_batch(x), dp.pmap_batch(y)),
        "jit": (dp.jit_batch(x, mesh), dp.jit_batch(y, mesh)),
    }

    results = {"meta/device_count": np.array(jax.device_count())}
    for mode in args.modes.split(","):
        step, carry = steps[mode](), initial
        start = time.perf_counter()
        for i in range(args.steps):
            if i == args.die_at_step:
                # Between two steps: every collective of this process is done.
                jax.block_until_ready(carry)
                die(args.die_by, f"{name}: {args.die_by} before {mode} step {i}")
            loss, carry = step(carry, *batches[mode])
            print(f"{name}: {mode} step {i} loss {float(loss):.6f}", flush=True)
        elapsed = time.perf_counter() - start
        print(f"{name}: {mode} done in {elapsed:.2f} s", flush=True)
        results.update({f"{mode}/{k}": v for k, v in final_params(args.impl, carry).items()})
    np.savez(args.out, **results)


if __name__ == "__main__":
    main()
