"""One state's value as a JSON record plus the arrays to store, and back.

A record says what the value is, so that a restore rebuilds it without
anything but the checkpoint:

* ``array``: shape, dtype, and whether it was a NumPy array or scalar
  (zero-size arrays are recorded but not stored: orbax cannot store them);
* ``key``: a typed PRNG key, as its implementation's name and its key data;
* ``quantity``: a brainunit Quantity, as its unit and its mantissa's record;
* ``dict`` (with str keys), ``list``, ``tuple``, ``none`` and ``literal``
  (a Python str, bool, int or float), restored exactly;
* ``node``: any other pytree node (an `equinox.Module`, a NamedTuple), as
  the records of its leaves by key path. Its structure and its non-array
  leaves are not stored: a restore takes them from `like`.
* ``static``: a non-array leaf (a function), also taken from `like`.

The arrays of a value are stored in the order its record lists them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import brainunit as u
import jax
import jax.numpy as jnp
import numpy as np

from ._kinds import kind_name
from ._units import unit_from_json, unit_to_json

__all__ = [
    "NO_LIKE",
    "Record",
    "decode",
    "describe",
    "encode",
    "mismatch",
    "needs_like",
    "stored_arrays",
]

Record = dict[str, Any]
_LITERALS = (str, bool, int, float)
NO_LIKE: Any = object()  # "no like value given", distinct from None


def _is_quantity(x: Any) -> bool:
    return isinstance(x, u.Quantity)


def _is_key(x: Any) -> bool:
    return isinstance(x, (jax.Array, jax.ShapeDtypeStruct)) and jax.dtypes.issubdtype(
        x.dtype, jax.dtypes.prng_key
    )


def _is_array(x: Any, abstract: bool) -> bool:
    return isinstance(x, (jax.Array, np.ndarray, np.generic)) or (
        abstract and isinstance(x, jax.ShapeDtypeStruct)
    )


def encode(value: Any, arrays: list[Any] | None) -> Record:
    """The record of `value`, appending the arrays to store to `arrays`.

    With ``arrays=None`` the value is only described (a `like` value, whose
    arrays may be `jax.ShapeDtypeStruct`s). Raises `TypeError` for a traced
    value or an abstract one when saving.
    """
    if _is_quantity(value):
        return {
            "type": "quantity",
            "unit": unit_to_json(value.unit),
            "mantissa": encode(value.mantissa, arrays),
        }
    if _is_key(value):
        return _key(value, arrays)
    if _is_array(value, abstract=arrays is None):
        return _array(value, arrays)
    if isinstance(value, jax.ShapeDtypeStruct):
        raise TypeError(
            f"it is an abstract jax.ShapeDtypeStruct{list(value.shape)}, which holds no data"
        )
    if value is None:
        return {"type": "none"}
    kind = type(value)
    if kind in _LITERALS:
        return {"type": "literal", "value": value}
    if kind is dict and all(type(k) is str for k in value):
        return {"type": "dict", "items": [[k, encode(v, arrays)] for k, v in value.items()]}
    if kind is list or kind is tuple:
        return {"type": kind.__name__, "items": [encode(v, arrays) for v in value]}
    pairs, _ = jax.tree_util.tree_flatten_with_path(value, is_leaf=_is_quantity)
    if len(pairs) == 1 and pairs[0][1] is value:  # a leaf, but not an array
        return {"type": "static", "class": kind_name(kind)}
    return {
        "type": "node",
        "class": kind_name(kind),
        "leaves": [[jax.tree_util.keystr(path), _leaf(leaf, arrays)] for path, leaf in pairs],
    }


def _leaf(leaf: Any, arrays: list[Any] | None) -> Record:
    # Inside a node only arrays (of any form) are stored; every other leaf
    # comes from `like`, together with the node's structure.
    if _is_quantity(leaf) or _is_key(leaf) or _is_array(leaf, abstract=arrays is None):
        return encode(leaf, arrays)
    return {"type": "static", "class": kind_name(type(leaf))}


def _array(x: Any, arrays: list[Any] | None) -> Record:
    if isinstance(x, jax.core.Tracer):
        raise TypeError(
            "it is a traced value: save outside jax.jit, jax.grad, jax.vmap and other transforms"
        )
    shape = [int(d) for d in np.shape(x)]
    record: Record = {"type": "array", "shape": shape, "dtype": str(x.dtype)}
    if isinstance(x, np.generic):
        record["numpy"] = "scalar"
    elif isinstance(x, np.ndarray):
        record["numpy"] = "array"
    if 0 in shape:
        record["empty"] = True  # nothing to store
    elif arrays is not None:
        arrays.append(x)
    return record


def _key(x: Any, arrays: list[Any] | None) -> Record:
    if isinstance(x, jax.ShapeDtypeStruct):
        if arrays is not None:
            raise TypeError(f"it is an abstract key {x}, which holds no data")
        impl = getattr(getattr(x.dtype, "_impl", None), "name", None)
        data = jax.eval_shape(jax.random.key_data, x)
    else:
        impl = str(jax.random.key_impl(x))
        data = jax.random.key_data(x)
    return {"type": "key", "impl": impl, "data": _array(data, arrays)}


def needs_like(record: Record) -> str | None:
    """The class of the first part of the value that only `like` can give
    (a pytree node or a non-array leaf), or None if the record suffices."""
    kind = record["type"]
    if kind in ("node", "static"):
        return str(record["class"])
    if kind == "quantity":
        return needs_like(record["mantissa"])
    if kind == "dict":
        children = [r for _, r in record["items"]]
    elif kind in ("list", "tuple"):
        children = record["items"]
    else:
        return None
    for child in children:
        found = needs_like(child)
        if found is not None:
            return found
    return None


def describe(record: Record) -> str:
    """``'float32[3]'``, ``'Quantity[mV] float32[3]'``, ``'dict'``, ..."""
    kind = record["type"]
    if kind == "array":
        prefix = "numpy " if "numpy" in record else ""
        return f"{prefix}{record['dtype']}[{','.join(map(str, record['shape']))}]"
    if kind == "key":
        shape = record["data"]["shape"][:-1]
        return f"key<{record['impl']}>[{','.join(map(str, shape))}]"
    if kind == "quantity":
        return f"Quantity[{record['unit']['repr']}] {describe(record['mantissa'])}"
    if kind == "literal":
        return f"{type(record['value']).__name__} {record['value']!r}"
    if kind in ("node", "static"):
        return str(record["class"]).rpartition(":")[2]
    return str(kind)


def mismatch(saved: Record, like: Record, where: str = "") -> str | None:
    """Where and how `like`'s record differs from the checkpoint's, or None."""
    at = f" at {where}" if where else ""
    kind = saved["type"]
    if kind != like["type"]:
        return f"{describe(saved)} in the checkpoint, {describe(like)} in like{at}"
    if kind == "array":
        if saved["shape"] != like["shape"] or saved["dtype"] != like["dtype"]:
            return f"{describe(saved)} in the checkpoint, {describe(like)} in like{at}"
        return None
    if kind == "key":
        same_impl = like["impl"] is None or saved["impl"] == like["impl"]
        if not same_impl or saved["data"]["shape"] != like["data"]["shape"]:
            return f"{describe(saved)} in the checkpoint, {describe(like)} in like{at}"
        return None
    if kind == "quantity":
        if unit_from_json(saved["unit"]) != unit_from_json(like["unit"]):
            return f"{describe(saved)} in the checkpoint, {describe(like)} in like{at}"
        return mismatch(saved["mantissa"], like["mantissa"], where)
    if kind == "dict":
        saved_keys = [k for k, _ in saved["items"]]
        like_keys = [k for k, _ in like["items"]]
        if sorted(saved_keys) != sorted(like_keys):
            return f"a dict with keys {sorted(saved_keys)} in the checkpoint, {sorted(like_keys)} in like{at}"
        like_items = dict(like["items"])
        pairs = [(r, like_items[k], f"{where}[{k!r}]") for k, r in saved["items"]]
    elif kind in ("list", "tuple"):
        if len(saved["items"]) != len(like["items"]):
            return f"a {kind} of {len(saved['items'])} in the checkpoint, of {len(like['items'])} in like{at}"
        pairs = [
            (r, lr, f"{where}[{i}]")
            for i, (r, lr) in enumerate(zip(saved["items"], like["items"], strict=True))
        ]
    elif kind == "node":
        saved_paths = [p for p, _ in saved["leaves"]]
        like_paths = [p for p, _ in like["leaves"]]
        if saved_paths != like_paths:
            return (
                f"a {describe(saved)} with leaves {saved_paths} in the checkpoint, a "
                f"{describe(like)} with leaves {like_paths} in like{at}"
            )
        pairs = [
            (r, lr, f"{where}{p}")
            for (p, r), (_, lr) in zip(saved["leaves"], like["leaves"], strict=True)
        ]
    else:  # none, literal and static values come from the checkpoint or from like as they are
        return None
    for child, like_child, child_where in pairs:
        found = mismatch(child, like_child, child_where)
        if found is not None:
            return found
    return None


def _children(record: Record, like: Any) -> Iterator[tuple[Record, Any]]:
    """The child records of a container or node record, each with the part
    of `like` (or `NO_LIKE`) in the same place."""
    kind = record["type"]
    if kind == "quantity":
        yield record["mantissa"], NO_LIKE if like is NO_LIKE else like.mantissa
    elif kind == "dict":
        for k, child in record["items"]:
            yield child, NO_LIKE if like is NO_LIKE else like[k]
    elif kind in ("list", "tuple"):
        for i, child in enumerate(record["items"]):
            yield child, NO_LIKE if like is NO_LIKE else like[i]
    elif kind == "node" and like is NO_LIKE:
        for _, child in record["leaves"]:
            yield child, NO_LIKE
    elif kind == "node":
        leaves = jax.tree_util.tree_leaves(like, is_leaf=_is_quantity)
        for (_, child), leaf in zip(record["leaves"], leaves, strict=True):
            yield child, leaf


def stored_arrays(record: Record, like: Any = NO_LIKE) -> Iterator[tuple[Record, Any]]:
    """``(array record, the array in like's value at its place, or None)``
    for each stored array, in storage order. `like` (a value whose record
    matches) gives the shardings; a node's record needs it."""
    kind = record["type"]
    if kind == "array":
        if not record.get("empty"):
            yield record, None if like is NO_LIKE else like
    elif kind == "key":
        data = None
        if like is not NO_LIKE:
            data = like if isinstance(like, jax.ShapeDtypeStruct) else jax.random.key_data(like)
        yield from stored_arrays(record["data"], data if data is not None else NO_LIKE)
    else:
        for child, like_child in _children(record, like):
            yield from stored_arrays(child, like_child)


def decode(record: Record, arrays: Iterator[Any], like: Any = NO_LIKE, where: str = "") -> Any:
    """The value `record` describes, taking its stored arrays from `arrays`
    (in storage order) and a node's structure and non-array leaves from
    `like`. Raises `ValueError` for a record that is not one."""
    kind = record["type"]
    if kind == "array":
        if record.get("empty"):
            return _empty(record, like)
        array = next(arrays)
        numpy = record.get("numpy")
        if numpy == "scalar":
            return np.asarray(array)[()]
        return np.asarray(array) if numpy == "array" else array
    if kind == "key":
        data_like = NO_LIKE
        if like is not NO_LIKE and not isinstance(like, jax.ShapeDtypeStruct):
            data_like = jax.random.key_data(like)
        data = decode(record["data"], arrays, data_like)
        return jax.random.wrap_key_data(data, impl=record["impl"])
    if kind == "quantity":
        mantissa = decode(record["mantissa"], arrays, _part(like, "mantissa"))
        return u.Quantity(mantissa, unit=unit_from_json(record["unit"]))
    if kind == "none":
        return None
    if kind == "literal":
        return record["value"]
    if kind == "dict":
        return {
            k: decode(child, arrays, like_child)
            for (k, _), (child, like_child) in zip(
                record["items"], _children(record, like), strict=True
            )
        }
    if kind in ("list", "tuple"):
        items = [decode(child, arrays, like_child) for child, like_child in _children(record, like)]
        return items if kind == "list" else tuple(items)
    if kind == "static":
        return like
    if kind == "node":
        leaves, treedef = jax.tree_util.tree_flatten(like, is_leaf=_is_quantity)
        rebuilt = [
            leaf if child["type"] == "static" else decode(child, arrays, leaf)
            for (_, child), leaf in zip(record["leaves"], leaves, strict=True)
        ]
        return jax.tree_util.tree_unflatten(treedef, rebuilt)
    raise ValueError(f"unknown value record type {kind!r}")


def _part(like: Any, name: str) -> Any:
    return NO_LIKE if like is NO_LIKE else getattr(like, name)


def _empty(record: Record, like: Any) -> Any:
    # Zero-size arrays hold no data: rebuilt from their shape and dtype, on
    # like's sharding where there is one.
    shape, dtype = tuple(record["shape"]), jnp.dtype(record["dtype"])
    numpy = record.get("numpy")
    if numpy is not None:
        return np.zeros(shape, dtype)
    sharding = getattr(like, "sharding", None) if like is not NO_LIKE else None
    if sharding is None:
        return jnp.zeros(shape, dtype)
    return jax.make_array_from_callback(
        shape, sharding, lambda index: np.zeros(shape, dtype)[index]
    )
