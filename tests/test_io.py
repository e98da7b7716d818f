"""ps.io: saving and restoring state trees with orbax-checkpoint.

Every round trip is compared with the original tree leaf by leaf (type,
dtype, shape, bits, units, key data and implementation, dict order), and
the stored arrays with what plain orbax reads from the same directory. The
multi-process test saves from 2 processes of 2 devices (tests/io_worker.py)
and compares what one process and two processes restore with NumPy arrays.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import brainunit as u
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import purestate as ps

sys.path.insert(0, str(Path(__file__).parent))
import io_worker

WORKER = Path(__file__).with_name("io_worker.py")


class Synapse(ps.ParamState):
    """A user's own kind, importable as test_io:Synapse."""

    __slots__ = ()


class Ghost(ps.State):
    __slots__ = ()


Ghost.__module__ = "purestate_no_such_module"  # saved under a name that cannot be imported


# --- comparing trees exactly ------------------------------------------------


def _is_key(x: Any) -> bool:
    return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def assert_same_value(a: Any, b: Any, where: str) -> None:
    assert type(a) is type(b), f"{where}: {type(a).__name__} vs {type(b).__name__}"
    if isinstance(a, u.Quantity):
        assert a.unit == b.unit and str(a.unit) == str(b.unit), f"{where}: {a.unit} vs {b.unit}"
        assert_same_value(a.mantissa, b.mantissa, f"{where}.mantissa")
    elif _is_key(a):
        assert jax.random.key_impl(a) == jax.random.key_impl(b), where
        assert_same_value(jax.random.key_data(a), jax.random.key_data(b), f"{where}.key_data")
    elif isinstance(a, (jax.Array, np.ndarray, np.generic)):
        assert a.dtype == b.dtype and a.shape == b.shape, f"{where}: {a.dtype}{a.shape}"
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes(), f"{where}: values differ"
    elif isinstance(a, dict):
        assert list(a) == list(b), f"{where}: keys {list(a)} vs {list(b)}"
        for k in a:
            assert_same_value(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_value(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} vs {b!r}"


def assert_same_tree(a: dict, b: dict, prefix: str = "") -> None:
    assert list(a) == list(b), f"{prefix or 'root'}: keys {list(a)} vs {list(b)}"
    for key, x in a.items():
        y, where = b[key], f"{prefix}/{key}".lstrip("/")
        if isinstance(x, dict):
            assert isinstance(y, dict), where
            assert_same_tree(x, y, where)
        else:
            assert type(x) is type(y), f"{where}: kind {type(x).__name__} vs {type(y).__name__}"
            assert_same_value(x.value, y.value, where)
    assert jax.tree.structure(a) == jax.tree.structure(b)


def rich_tree() -> dict:
    """Kinds (a user's too), units, dtypes, keys, NumPy values, exact containers."""
    x = jnp.arange(6, dtype=jnp.float32).reshape(2, 3)
    return {
        "lif": {
            "V": ps.ShortTermState(jnp.linspace(-70, -50, 4) * u.mV),
            "tau": ps.ParamState(jnp.full(4, 10.0) * u.ms),
            "g": ps.ParamState(jnp.ones(4) * u.nS),
            "I": ps.ShortTermState(jnp.zeros(4) * u.pA),
            "rate": ps.LongTermState(jnp.full(4, 5.0) * u.Hz),
            "dVdt": ps.ShortTermState(jnp.ones(4) * (u.mV / u.ms)),
            "ratio": ps.LongTermState(u.Quantity(jnp.ones(2))),
        },
        "syn": Synapse(x),
        "a.b": ps.ParamState(-x),  # a key with a dot beside a nested a/b
        "a": {"b": ps.ParamState(x + 1)},
        "dtypes": {
            d: ps.LongTermState(jnp.arange(3).astype(d))
            for d in [
                "float16",
                "bfloat16",
                "int8",
                "uint8",
                "int32",
                "uint32",
                "bool",
                "complex64",
            ]
        },
        "numpy": ps.LongTermState(np.linspace(0, 1, 5)),  # float64, kept as NumPy
        "npscalar": ps.LongTermState(np.float32(2.5)),
        "count": ps.LongTermState(7),
        "nothing": ps.LongTermState(jnp.zeros((0, 3))),
        "rng": ps.RandomState(jax.random.key(0)),
        "keys": ps.RandomState(jax.random.split(jax.random.key(1), 3)),
        "rbg": ps.RandomState(jax.random.key(2, impl="rbg")),
        "raw_key": ps.RandomState(jax.random.PRNGKey(3)),
        "dict": ps.State({"z": jnp.ones(2), "a": [jnp.zeros(1), (None, "label")], "q": 3.0 * u.mV}),
        "empty": {},
        "none": ps.State(None),
        "deep": {"er": {}, "x": ps.State(jnp.ones(1))},
    }


# --- round trips --------------------------------------------------------------


def test_round_trip_keeps_paths_kinds_dtypes_units_keys_and_containers(tmp_path):
    tree = rich_tree()
    ps.io.save(tmp_path / "ckpt", tree)
    back = ps.io.restore(tmp_path / "ckpt")
    assert_same_tree(tree, back)
    assert type(back["syn"]) is Synapse
    assert str(back["lif"]["dVdt"].value.unit) == "mV / ms"
    assert back["empty"] == {}


def test_plain_orbax_reads_the_same_arrays_under_the_state_paths(tmp_path):
    import orbax.checkpoint as ocp

    tree = rich_tree()
    ps.io.save(tmp_path / "ckpt", tree)
    raw = ocp.StandardCheckpointer().restore(tmp_path / "ckpt")
    np.testing.assert_array_equal(raw["a%2Eb"], np.asarray(tree["a.b"].value))
    np.testing.assert_array_equal(raw["a"]["b"], np.asarray(tree["a"]["b"].value))
    np.testing.assert_array_equal(raw["lif"]["V"], np.linspace(-70, -50, 4).astype(np.float32))
    np.testing.assert_array_equal(raw["keys"], jax.random.key_data(tree["keys"].value))
    np.testing.assert_array_equal(raw["dict"]["2"], np.float32(3.0))  # the q mantissa
    assert raw["numpy"].dtype == np.float64
    assert "nothing" not in raw and "none" not in raw  # nothing to store


def test_restore_with_like_and_abstract_like_gives_the_same_tree(tmp_path):
    tree = rich_tree()
    ps.io.save(tmp_path, tree, step=0)
    assert_same_tree(tree, ps.io.restore(tmp_path, like=tree))
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype) if hasattr(x, "dtype") else x, tree
    )
    assert isinstance(abstract["lif"]["V"].value.mantissa, jax.ShapeDtypeStruct)
    assert_same_tree(tree, ps.io.restore(tmp_path, like=abstract))


def test_empty_tree_round_trips(tmp_path):
    ps.io.save(tmp_path / "a", {})
    assert ps.io.restore(tmp_path / "a") == {}
    only_empty = {"x": {}, "y": ps.State(None)}
    ps.io.save(tmp_path / "b", only_empty)
    back = ps.io.restore(tmp_path / "b")
    assert back["x"] == {} and type(back["y"]) is ps.State and back["y"].value is None


def test_equinox_module_values_are_restored_into_like(tmp_path):
    mlp = eqx.nn.MLP(2, 3, 4, 1, key=jax.random.key(0))
    tree = {"net": ps.ParamState(mlp), "h": ps.ShortTermState(jnp.zeros(3))}
    ps.io.save(tmp_path, tree)
    with pytest.raises(ps.io.CheckpointError, match=r"(?s)MLP.*'net'.*a like is needed"):
        ps.io.restore(tmp_path)
    fresh = {"net": ps.ParamState(eqx.nn.MLP(2, 3, 4, 1, key=jax.random.key(1))), "h": tree["h"]}
    back = ps.io.restore(tmp_path, like=fresh)
    for (path, a), b in zip(
        jax.tree_util.tree_leaves_with_path(mlp), jax.tree.leaves(back["net"].value), strict=True
    ):
        if isinstance(a, jax.Array):
            np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(path))
        else:  # the activation functions come from like
            assert a is b
    assert not np.array_equal(mlp.layers[0].weight, fresh["net"].value.layers[0].weight)
    x = jnp.ones(2)
    np.testing.assert_array_equal(back["net"].value(x), mlp(x))


def test_quantity_inside_a_module_keeps_its_unit(tmp_path):
    class Cell(eqx.Module):
        V: Any
        tau: float

        def __init__(self, V: Any, tau: float):
            self.V, self.tau = V, tau

    tree = {"cell": ps.ShortTermState(Cell(jnp.ones(3) * u.mV, 2.0))}
    ps.io.save(tmp_path, tree)
    back = ps.io.restore(tmp_path, like={"cell": ps.ShortTermState(Cell(jnp.zeros(3) * u.mV, 2.0))})
    assert back["cell"].value.V.unit == u.mV
    np.testing.assert_array_equal(back["cell"].value.V.mantissa, np.ones(3, np.float32))
    with pytest.raises(ps.StateError, match=r"'cell'.*Quantity\[mV\].*Quantity\[V\]"):
        ps.io.restore(tmp_path, like={"cell": ps.ShortTermState(Cell(jnp.zeros(3) * u.volt, 2.0))})


# --- kinds ----------------------------------------------------------------------


def test_a_kind_that_cannot_be_imported_is_named_with_its_paths(tmp_path):
    tree = {"g": {"x": Ghost(jnp.ones(2))}, "w": ps.ParamState(jnp.ones(1))}
    ps.io.save(tmp_path, tree)
    with pytest.raises(ps.io.CheckpointError, match=r"purestate_no_such_module:Ghost.*'g/x'"):
        ps.io.restore(tmp_path)
    back = ps.io.restore(tmp_path, like=tree)  # like gives the kind
    assert type(back["g"]["x"]) is Ghost


def test_a_kind_defined_in_a_function_needs_like(tmp_path):
    class Local(ps.State):
        __slots__ = ()

    tree = {"s": Local(jnp.ones(2))}
    ps.io.save(tmp_path, tree)
    with pytest.raises(ps.io.CheckpointError, match=r"Local.*'s'.*inside a function"):
        ps.io.restore(tmp_path)
    assert type(ps.io.restore(tmp_path, like=tree)["s"]) is Local


# --- like that does not fit -----------------------------------------------------


def test_like_with_other_paths_kinds_shapes_dtypes_or_units_names_every_path(tmp_path):
    tree = {
        "w": ps.ParamState(jnp.ones((2, 3))),
        "b": ps.ParamState(jnp.ones(3)),
        "V": ps.ShortTermState(jnp.ones(3) * u.mV),
        "n": ps.LongTermState(jnp.ones(3, jnp.int32)),
        "d": ps.State({"x": jnp.ones(1)}),
        "gone": ps.LongTermState(jnp.ones(1)),
    }
    ps.io.save(tmp_path, tree)
    like = {
        "w": ps.ParamState(jnp.ones((3, 2))),
        "b": ps.ShortTermState(jnp.ones(3)),
        "V": ps.ShortTermState(jnp.ones(3) * u.volt),
        "n": ps.LongTermState(jnp.ones(3, jnp.float32)),
        "d": ps.State({"y": jnp.ones(1)}),
        "new": ps.LongTermState(jnp.ones(1)),
    }
    with pytest.raises(ps.StateError) as info:
        ps.io.restore(tmp_path, like=like)
    message = str(info.value)
    for expected in [
        "not in like: 'gone'",
        "not in the checkpoint: 'new'",
        "'w': float32[2,3] in the checkpoint, float32[3,2] in like",
        "'b': kind purestate._state:ParamState in the checkpoint, "
        "purestate._state:ShortTermState in like",
        "'V': Quantity[mV]",
        "'n': int32[3] in the checkpoint, float32[3] in like",
        "'d': a dict with keys ['x'] in the checkpoint, ['y'] in like",
    ]:
        assert expected in message, message


# --- shardings ------------------------------------------------------------------


@pytest.mark.multidevice
def test_restore_places_arrays_on_likes_shardings(tmp_path):
    mesh = jax.make_mesh((4,), ("x",))
    rows = NamedSharding(mesh, P("x"))
    cols = NamedSharding(mesh, P(None, "x"))
    w = np.arange(32, dtype=np.float32).reshape(8, 4)
    tree = {
        "w": ps.ParamState(jax.device_put(w, rows)),
        "V": ps.ShortTermState(jax.device_put(w[:, 0], rows) * u.mV),
        "rng": ps.RandomState(jax.random.key(3)),
    }
    ps.io.save(tmp_path, tree, step=1)
    like = {
        "w": ps.ParamState(jax.device_put(np.zeros_like(w), cols)),
        "V": ps.ShortTermState(jax.device_put(np.zeros(8, np.float32), rows) * u.mV),
        "rng": ps.RandomState(jax.device_put(jax.random.key(0), NamedSharding(mesh, P()))),
    }
    back = ps.io.restore(tmp_path, like=like)
    assert back["w"].value.sharding == cols
    assert back["V"].value.mantissa.sharding == rows
    assert back["rng"].value.sharding == NamedSharding(mesh, P())
    np.testing.assert_array_equal(back["w"].value, w)
    np.testing.assert_array_equal(back["V"].value.mantissa, w[:, 0])
    np.testing.assert_array_equal(
        jax.random.key_data(back["rng"].value), jax.random.key_data(tree["rng"].value)
    )
    # Without like: whole arrays on the first device.
    plain = ps.io.restore(tmp_path)
    assert plain["w"].value.sharding == jax.sharding.SingleDeviceSharding(jax.devices()[0])
    assert_same_tree(tree, plain)


# --- steps ----------------------------------------------------------------------


def small_tree(i: int) -> dict:
    return {"w": ps.ParamState(jnp.full(3, float(i))), "step": ps.LongTermState(i)}


def test_steps_latest_step_and_restore_by_step(tmp_path):
    assert ps.io.latest_step(tmp_path / "missing") is None
    assert ps.io.latest_step(tmp_path) is None
    for i in (5, 20, 10):
        ps.io.save(tmp_path, small_tree(i), step=i)
    assert ps.io.latest_step(tmp_path) == 20
    for i in (5, 10, 20):
        assert_same_tree(small_tree(i), ps.io.restore(tmp_path, step=i))
    assert_same_tree(small_tree(20), ps.io.restore(tmp_path))
    with pytest.raises(ps.io.CheckpointError, match=r"step 7 .*finished steps '5', '10', '20'"):
        ps.io.restore(tmp_path, step=7)


def test_keep_deletes_the_lowest_steps(tmp_path):
    for i in range(5):
        ps.io.save(tmp_path, small_tree(i), step=i, keep=2)
    assert sorted(os.listdir(tmp_path)) == ["3", "4"]
    ps.io.save(tmp_path, small_tree(1), step=1, keep=2)  # the step just saved stays
    assert sorted(os.listdir(tmp_path)) == ["1", "4"]
    with pytest.raises(ValueError, match="keep"):
        ps.io.save(tmp_path / "x", small_tree(0), keep=1)
    with pytest.raises(ValueError, match="keep"):
        ps.io.save(tmp_path, small_tree(0), step=9, keep=0)


def test_bad_steps_and_arguments(tmp_path):
    with pytest.raises(ValueError, match="step"):
        ps.io.save(tmp_path, small_tree(0), step=-1)
    with pytest.raises(TypeError, match="step"):
        ps.io.save(tmp_path, small_tree(0), step=1.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="str or os.PathLike"):
        ps.io.save(3, small_tree(0))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="state tree"):
        ps.io.save(tmp_path, ps.ParamState(jnp.ones(1)))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"'w'.*not a State"):
        ps.io.save(tmp_path, {"w": jnp.ones(1)})
    with pytest.raises(TypeError, match=r"state at '(w|step)'.*abstract"):
        ps.io.save(tmp_path, jax.eval_shape(lambda: small_tree(0)))
    with pytest.raises(TypeError, match=r"ps.io.restore\(like=...\)"):
        ps.io.restore(tmp_path, like=[1])  # type: ignore[arg-type]


def test_saving_inside_a_transform_names_the_path(tmp_path):
    def f(x: jax.Array) -> jax.Array:
        ps.io.save(tmp_path, {"w": ps.ParamState(x)})
        return x

    with pytest.raises(TypeError, match=r"'w'.*traced"):
        jax.jit(f)(jnp.ones(2))


# --- overwrite --------------------------------------------------------------------


def test_overwrite_false_never_replaces_and_true_does(tmp_path):
    ps.io.save(tmp_path, small_tree(1), step=1)
    with pytest.raises(ps.io.CheckpointError, match="overwrite=True"):
        ps.io.save(tmp_path, small_tree(2), step=1)
    assert_same_tree(small_tree(1), ps.io.restore(tmp_path, step=1))
    ps.io.save(tmp_path, small_tree(2), step=1, overwrite=True)
    assert_same_tree(small_tree(2), ps.io.restore(tmp_path, step=1))
    assert sorted(os.listdir(tmp_path)) == ["1"]  # no staged or retired copies left

    ps.io.save(tmp_path / "one", small_tree(3))
    with pytest.raises(ps.io.CheckpointError, match="already holds a checkpoint"):
        ps.io.save(tmp_path / "one", small_tree(4))
    ps.io.save(tmp_path / "one", small_tree(4), overwrite=True)
    assert_same_tree(small_tree(4), ps.io.restore(tmp_path / "one"))


def test_a_directory_that_is_not_a_checkpoint_is_never_replaced(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "notes.txt").write_text("keep me")
    for overwrite in (False, True):
        with pytest.raises(ps.io.CheckpointError, match=r"not a checkpoint.*'notes.txt'"):
            ps.io.save(tmp_path / "data", small_tree(0), overwrite=overwrite)
    assert (tmp_path / "data" / "notes.txt").read_text() == "keep me"
    (tmp_path / "fresh").mkdir()  # an empty directory is used
    ps.io.save(tmp_path / "fresh", small_tree(0))
    assert_same_tree(small_tree(0), ps.io.restore(tmp_path / "fresh"))
    with pytest.raises(ps.io.CheckpointError, match="itself a checkpoint"):
        ps.io.save(tmp_path / "fresh", small_tree(1), step=1)


# --- damaged, missing and foreign directories --------------------------------------


def test_missing_empty_and_foreign_directories(tmp_path):
    with pytest.raises(ps.io.CheckpointError, match="does not exist"):
        ps.io.restore(tmp_path / "missing")
    with pytest.raises(ps.io.CheckpointError, match="is empty"):
        ps.io.restore(tmp_path)
    (tmp_path / "random").mkdir()
    (tmp_path / "random" / "a.bin").write_bytes(os.urandom(100))
    with pytest.raises(ps.io.CheckpointError, match=r"No checkpoint.*other entries 'a.bin'"):
        ps.io.restore(tmp_path / "random")
    import orbax.checkpoint as ocp

    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(tmp_path / "orbax", {"w": np.ones(2)})
    with pytest.raises(ps.io.CheckpointError, match="not a checkpoint written by ps.io.save"):
        ps.io.restore(tmp_path / "orbax")


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_damaged_metadata_and_array_files_are_reported(tmp_path):
    tree = {"w": ps.ParamState(jnp.arange(4000.0)), "b": ps.ParamState(jnp.ones(3))}
    ps.io.save(tmp_path / "good", tree)

    def damaged(name: str) -> Path:
        copy = tmp_path / name
        shutil.copytree(tmp_path / "good", copy)
        return copy

    bad = damaged("metadata_truncated")
    (bad / "_CHECKPOINT_METADATA").write_text((bad / "_CHECKPOINT_METADATA").read_text()[:40])
    with pytest.raises(ps.io.CheckpointError, match="_CHECKPOINT_METADATA is not valid JSON"):
        ps.io.restore(bad)
    bad = damaged("metadata_deleted")
    (bad / "_CHECKPOINT_METADATA").unlink()
    with pytest.raises(ps.io.CheckpointError, match="_CHECKPOINT_METADATA is missing"):
        ps.io.restore(bad)
    bad = damaged("array_file_deleted")
    largest = max((p for p in bad.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    assert largest.stat().st_size > 4000  # the data of 'w'
    largest.unlink()
    with pytest.raises(ps.io.CheckpointError, match="reading its arrays failed"):
        ps.io.restore(bad)


# orbax leaves coroutines of failed reads behind, which Python reports.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_deleting_or_truncating_any_file_never_restores_a_different_tree(tmp_path):
    """Each file of a checkpoint in turn: deleted, or cut to half its size.
    The restore either gives the saved tree or raises CheckpointError."""
    tree = {"w": ps.ParamState(jnp.arange(3000.0)), "V": ps.ShortTermState(jnp.ones(2) * u.mV)}
    ps.io.save(tmp_path / "good", tree)
    files = sorted(p.relative_to(tmp_path / "good") for p in (tmp_path / "good").rglob("*"))
    files = [f for f in files if (tmp_path / "good" / f).is_file()]
    errors = 0
    for n, name in enumerate(files):
        for how in ("delete", "truncate"):
            copy = tmp_path / f"{how}{n}"
            shutil.copytree(tmp_path / "good", copy)
            target = copy / name
            if how == "delete":
                target.unlink()
            else:
                with open(target, "r+b") as f:
                    f.truncate(target.stat().st_size // 2)
            try:
                back = ps.io.restore(copy)
            except ps.io.CheckpointError:
                errors += 1
            else:
                assert_same_tree(tree, back)
    assert errors > len(files) // 2  # much of it matters, and none of it goes unnoticed


# --- interrupted saves ------------------------------------------------------------


def kill_mid_save(root: Path, step: int, marker: str, overwrite: bool = False) -> None:
    """Start a process saving 256 MB at `step` of `root` and SIGKILL it as
    soon as the temporary directory named `marker` holds data."""
    cmd = [sys.executable, str(WORKER), "big-save", "--dir", str(root), "--step", str(step)]
    cmd += ["--overwrite"] * overwrite
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
    log = root.parent / f"big-save-{step}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and proc.poll() is None:
                found = glob.glob(str(root / marker) + "*")
                if found and any(Path(found[0]).iterdir()):
                    break
                time.sleep(0.005)
            assert proc.poll() is None, f"the save ended before it was killed:\n{log.read_text()}"
            proc.send_signal(signal.SIGKILL)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert "saved" not in log.read_text().split()


@pytest.mark.slow
def test_a_save_killed_mid_way_leaves_the_previous_steps(tmp_path):
    root = tmp_path / "run"
    ps.io.save(root, small_tree(1), step=1)
    kill_mid_save(root, step=2, marker="2.orbax-checkpoint-tmp")
    assert ps.io.latest_step(root) == 1
    assert_same_tree(small_tree(1), ps.io.restore(root))
    with pytest.raises(ps.io.CheckpointError, match=r"step 2 .*unfinished or interrupted"):
        ps.io.restore(root, step=2)
    ps.io.save(root, small_tree(2), step=2)  # the leftovers do not get in the way
    assert_same_tree(small_tree(2), ps.io.restore(root))
    assert sorted(os.listdir(root)) == ["1", "2"]


@pytest.mark.slow
def test_an_overwrite_killed_mid_way_keeps_the_old_checkpoint(tmp_path):
    root = tmp_path / "run"
    ps.io.save(root, small_tree(1), step=1)
    kill_mid_save(root, step=1, marker="1.purestate-new.orbax-checkpoint-tmp", overwrite=True)
    assert ps.io.latest_step(root) == 1
    assert_same_tree(small_tree(1), ps.io.restore(root, step=1))
    ps.io.save(root, small_tree(9), step=1, overwrite=True)
    assert_same_tree(small_tree(9), ps.io.restore(root, step=1))
    assert sorted(os.listdir(root)) == ["1"]


# --- several processes --------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def workers(tmp_path: Path, action: str, n: int = 2) -> Iterator[None]:
    """Run `n` io_worker processes of 2 devices each; fail with their logs
    unless all succeed within 120 s."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(
        XLA_FLAGS="--xla_force_host_platform_device_count=2",
        JAX_PLATFORMS="cpu",
        PYTHONUNBUFFERED="1",
    )
    coordinator = f"127.0.0.1:{free_port()}"
    procs, logs = [], []
    try:
        for pid in range(n):
            log = tmp_path / f"{action}{pid}.log"
            logs.append(log)
            cmd = [sys.executable, str(WORKER), action, "--dir", str(tmp_path / "ckpt")]
            cmd += ["--coordinator", coordinator, "--num-processes", str(n)]
            cmd += ["--process-id", str(pid), "--out", str(tmp_path / f"{action}{pid}.npz")]
            with open(log, "w") as out:
                procs.append(
                    subprocess.Popen(
                        cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
                    )
                )
        deadline = time.monotonic() + 120
        while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
            time.sleep(0.05)
        text = "\n".join(f"--- {log.name} ---\n{log.read_text()[-3000:]}" for log in logs)
        assert all(p.returncode == 0 for p in procs), text
        yield
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


@pytest.mark.slow
@pytest.mark.multidevice
def test_sharded_save_from_two_processes_restores_in_one_and_in_two(tmp_path):
    values = io_worker.global_values()
    key_data = np.asarray(jax.random.key_data(jax.random.key(io_worker.KEY_SEED)))
    with workers(tmp_path, "save"):
        pass
    # Every process wrote its own shards.
    step_dir = tmp_path / "ckpt" / str(io_worker.STEP)
    assert sorted(p.name for p in step_dir.glob("ocdbt.process_*")) == [
        "ocdbt.process_0",
        "ocdbt.process_1",
    ]

    # One process (this one, 4 devices), on like's shardings.
    mesh = jax.make_mesh((4,), ("x",))
    like = io_worker.build_tree(
        mesh, {k: np.zeros_like(v) for k, v in values.items()}, which=3, key_seed=0
    )
    back = ps.io.restore(tmp_path / "ckpt", like=like)
    got, placed = io_worker.leaves_by_path(back), io_worker.leaves_by_path(like)
    for path, want in values.items():
        np.testing.assert_array_equal(np.asarray(got[path]), want, err_msg=path)
        assert got[path].sharding == placed[path].sharding, path
    np.testing.assert_array_equal(np.asarray(got["rng"]), key_data)
    assert back["V"].value.unit == u.mV
    plain = ps.io.restore(tmp_path / "ckpt")
    for path, want in values.items():
        np.testing.assert_array_equal(np.asarray(io_worker.leaves_by_path(plain)[path]), want)

    # Two processes, each reading its shards onto like's shardings.
    with workers(tmp_path, "restore"):
        pass
    for pid in range(2):
        out = np.load(tmp_path / f"restore{pid}.npz")
        for path, want in values.items():
            np.testing.assert_array_equal(out[path], want, err_msg=f"{path}, process {pid}")
            assert bool(out[f"{path}/same_sharding"]), f"{path}, process {pid}"
        np.testing.assert_array_equal(out["rng"], key_data)
        assert str(out["V/unit"]) == "mV"
        kinds = ["LongTermState", "LongTermState", "ParamState", "ParamState", "RandomState"]
        assert sorted(out["kinds"].tolist()) == sorted([*kinds, "ShortTermState"])


# --- import cost ------------------------------------------------------------------


def test_import_purestate_does_not_import_orbax():
    code = (
        "import sys, purestate as ps; ps.io.save, ps.io.CheckpointError; "
        "assert 'orbax.checkpoint' not in sys.modules; "
        "assert 'io' in ps.__all__ and 'io' in dir(ps)"
    )
    subprocess.run(
        [sys.executable, "-c", code], check=True, env={**os.environ, "JAX_PLATFORMS": "cpu"}
    )
