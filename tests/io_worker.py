"""A separate process for the ``ps.io`` tests in ``tests/test_io.py``.

Not a test module. Two uses:

* ``big-save``: save a large tree (``--megabytes`` of random float32 arrays)
  with ``ps.io.save``; the test kills this process mid-save::

      python tests/io_worker.py big-save --dir DIR --step 2 --megabytes 256

* ``save`` / ``restore``: one of several processes under ``jax.distributed``
  (each with 2 host CPU devices) that saves the tree of `global_values`
  sharded over all the processes' devices, or restores it with ``like``
  arrays on other shardings and writes what it got, gathered, to ``--out``::

      XLA_FLAGS=--xla_force_host_platform_device_count=2 JAX_PLATFORMS=cpu \\
          python tests/io_worker.py save --dir DIR --coordinator 127.0.0.1:12345 \\
          --num-processes 2 --process-id 0
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np

STEP = 3
SEED = 7
# path -> (shape, dtype, how it is sharded when saved, how like= shards it)
LAYOUT: dict[str, tuple[tuple[int, ...], str, tuple, tuple]] = {
    "w": ((8, 8), "float32", ("x", None), (None, "x")),
    "layer/b": ((8,), "float32", ("x",), ()),
    "V": ((4, 4), "float32", (None, "x"), ("x", None)),
    "count": ((), "int32", (), ()),
    "stats/mean": ((12,), "float32", ("x",), ("x",)),
}
KEY_SEED = 42
UNIT = "mV"


def global_values(seed: int = SEED) -> dict[str, np.ndarray]:
    """The saved tree's arrays by path, in NumPy (the reference)."""
    rng = np.random.default_rng(seed)
    values = {}
    for path, (shape, dtype, _, _) in LAYOUT.items():
        if dtype == "int32":
            values[path] = rng.integers(-100, 100, size=shape).astype(np.int32)
        else:
            values[path] = rng.standard_normal(shape).astype(np.float32)
    return values


def build_tree(mesh: Any, values: dict[str, np.ndarray], which: int, key_seed: int) -> dict:
    """The state tree with each array sharded as LAYOUT's entry `which` says
    (2: saved, 3: like), global over every process's devices."""
    import brainunit as u
    import jax
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    import purestate as ps

    def place(path: str, array: np.ndarray) -> jax.Array:
        spec = P(*LAYOUT[path][which])
        return jax.make_array_from_callback(
            array.shape, NamedSharding(mesh, spec), lambda index: array[index]
        )

    key_data = np.asarray(jax.random.key_data(jax.random.key(key_seed)))
    key = jax.random.wrap_key_data(place_replicated(mesh, key_data))
    return {
        "w": ps.ParamState(place("w", values["w"])),
        "layer": {"b": ps.ParamState(place("layer/b", values["layer/b"]))},
        "V": ps.ShortTermState(u.Quantity(place("V", values["V"]), unit=u.mV)),
        "count": ps.LongTermState(place("count", values["count"])),
        "stats": ps.LongTermState({"mean": place("stats/mean", values["stats/mean"])}),
        "rng": ps.RandomState(key),
    }


def place_replicated(mesh: Any, array: np.ndarray) -> Any:
    import jax
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    return jax.make_array_from_callback(
        array.shape, NamedSharding(mesh, P()), lambda index: array[index]
    )


def leaves_by_path(tree: dict) -> dict[str, Any]:
    """The arrays of the tree as LAYOUT names them, plus 'rng' (key data)."""
    import jax

    return {
        "w": tree["w"].value,
        "layer/b": tree["layer"]["b"].value,
        "V": tree["V"].value.mantissa,
        "count": tree["count"].value,
        "stats/mean": tree["stats"].value["mean"],
        "rng": jax.random.key_data(tree["rng"].value),
    }


def distributed(args: argparse.Namespace) -> None:
    import jax
    from jax.experimental import multihost_utils

    port = args.coordinator.rsplit(":", 1)[1]
    jax.distributed.initialize(
        args.coordinator,
        num_processes=args.num_processes,
        process_id=args.process_id,
        initialization_timeout=60,
        coordinator_bind_address=f"127.0.0.1:{port}",
    )
    import purestate as ps

    mesh = jax.make_mesh((jax.device_count(),), ("x",))
    name = f"process {jax.process_index()}/{jax.process_count()}"
    print(f"{name}: {jax.local_device_count()} local devices of {jax.device_count()}", flush=True)
    values = global_values()
    if args.action == "save":
        ps.io.save(args.dir, build_tree(mesh, values, which=2, key_seed=KEY_SEED), step=STEP)
        print(f"{name}: saved", flush=True)
        return
    zeros = {k: np.zeros_like(v) for k, v in values.items()}
    like = build_tree(mesh, zeros, which=3, key_seed=0)
    restored = ps.io.restore(args.dir, like=like)
    got, want = leaves_by_path(restored), leaves_by_path(like)
    out: dict[str, Any] = {}
    for path, array in got.items():
        out[f"{path}/same_sharding"] = np.asarray(array.sharding == want[path].sharding)
        out[path] = np.asarray(multihost_utils.process_allgather(array, tiled=True))
    out["V/unit"] = np.asarray(str(restored["V"].value.unit))
    out["kinds"] = np.asarray([type(s).__name__ for s in ps.flatten(restored).values()])
    np.savez(args.out, **out)
    print(f"{name}: restored", flush=True)


def big_save(args: argparse.Namespace) -> None:
    import jax.numpy as jnp

    import purestate as ps

    rng = np.random.default_rng(args.step)
    n = max(1, args.megabytes // 4)  # 4 MB each
    tree = {
        f"a{i}": ps.ParamState(jnp.asarray(rng.standard_normal((1024, 1024), dtype=np.float32)))
        for i in range(n)
    }
    print("saving", flush=True)
    ps.io.save(args.dir, tree, step=args.step, overwrite=args.overwrite)
    print("saved", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("action", choices=["save", "restore", "big-save"])
    parser.add_argument("--dir", required=True)
    parser.add_argument("--coordinator")
    parser.add_argument("--num-processes", type=int, default=1)
    parser.add_argument("--process-id", type=int, default=0)
    parser.add_argument("--out")
    parser.add_argument("--step", type=int, default=STEP)
    parser.add_argument("--megabytes", type=int, default=256)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    if args.action == "big-save":
        big_save(args)
    else:
        distributed(args)


if __name__ == "__main__":
    sys.exit(main())
