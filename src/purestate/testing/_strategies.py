"""Hypothesis strategies for random state trees and selectors over them."""

from __future__ import annotations

import functools
import string
from collections.abc import Callable, Sequence
from typing import Any

import brainunit as u
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
from hypothesis.extra import numpy as hnp

from .._paths import Path
from .._selectors import All, Not
from .._selectors import Any as AnyOf
from .._state import LongTermState, ParamState, RandomState, ShortTermState, State
from .._tree import flatten, unflatten

__all__ = ["selectors", "state_trees", "subtrees"]

DEFAULT_KINDS = (ParamState, ShortTermState, LongTermState)
DEFAULT_UNITS = (u.mV, u.mA, u.ms, u.ohm)


def _array(shape: tuple[int, ...], dtype: Any) -> st.SearchStrategy:
    dtype = np.dtype(dtype)
    elements: st.SearchStrategy[Any]
    if dtype.kind == "f":
        elements = st.floats(-3, 3, width=min(dtype.itemsize * 8, 64), allow_nan=False)
    elif dtype.kind == "c":
        elements = st.complex_numbers(max_magnitude=3, width=dtype.itemsize * 8)
    elif dtype.kind == "b":
        elements = st.booleans()
    else:
        # Unsigned dtypes hold no negative numbers.
        elements = st.integers(0 if dtype.kind == "u" else -5, 5)
    return hnp.arrays(dtype, shape, elements=elements).map(jnp.asarray)


@st.composite
def _value(
    draw: st.DrawFn,
    shapes: st.SearchStrategy[tuple[int, ...]],
    dtypes: tuple[Any, ...],
    quantities: bool,
    dict_values: bool,
) -> Any:
    shape = draw(shapes)
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    form = draw(st.sampled_from(["array"] + ["quantity"] * quantities + ["dict"] * dict_values))
    if form == "quantity" and dtype.kind in "fc":
        return _array(shape, dtype).map(lambda a: a * draw(st.sampled_from(DEFAULT_UNITS)))
    if form == "dict":
        keys = draw(st.lists(st.sampled_from("xyz"), min_size=1, max_size=2, unique=True))
        return st.fixed_dictionaries({k: _array(shape, dtype) for k in keys})
    return _array(shape, dtype)


# Characters of generated keys, in shrinking order: a failing example shrinks
# towards short lowercase keys ('a', 'b', or 'w' from the common names).
KEY_CHARACTERS = string.ascii_lowercase + string.ascii_uppercase + string.digits + "_"
# Names as models spell them, mixed in so that the same name recurs at
# different depths (which globs such as '*V' then tell apart).
COMMON_KEYS = ("w", "b", "V", "lif", "layer_0", "h", "mean", "count", "W_in", "x1")


# State tree keys: non-empty identifiers of ASCII letters (either case), digits
# and underscores, up to 8 characters (so never containing '/').
_KEYS = st.one_of(
    st.lists(st.sampled_from(KEY_CHARACTERS), min_size=1, max_size=8).map("".join),
    st.sampled_from(COMMON_KEYS),
)

_BOOLEANS = st.booleans()
_SEEDS = st.integers(0, 2**32 - 1)


# Strategies are cached: building one per draw costs more than the draw.
@functools.cache
def _sibling_keys(n: int) -> st.SearchStrategy[list[str]]:
    return st.lists(_KEYS, min_size=n, max_size=n, unique=True)


@functools.cache
def _integers(lo: int, hi: int) -> st.SearchStrategy[int]:
    return st.integers(lo, hi)


def _place(draw: Any, n: int, depth: int, prefix: Path) -> list[Path]:
    """`n` paths under `prefix`, at most `depth` keys below it, none a prefix
    of another."""
    if n == 0:
        return []
    if depth == 1:
        return [(*prefix, k) for k in draw(_sibling_keys(n))]
    # Split the n states into groups, one group per child key: first how many
    # groups, then which group each state beyond the first of each goes to.
    # Every draw shrinks towards n groups of one state each, held directly
    # under its key, so a failing example shrinks towards a flat dict.
    groups = n - draw(_integers(0, n - 1))
    sizes = [1] * groups
    for _ in range(n - groups):
        sizes[draw(_integers(0, groups - 1))] += 1
    paths: list[Path] = []
    for key, size in zip(draw(_sibling_keys(len(sizes))), sizes, strict=True):
        if size == 1 and not draw(_BOOLEANS):
            paths.append((*prefix, key))
        else:
            paths.extend(_place(draw, size, depth - 1, (*prefix, key)))
    return paths


@st.composite
def _paths(draw: st.DrawFn, min_states: int, max_states: int, max_depth: int) -> list[Path]:
    """Between `min_states` and `max_states` distinct paths of 1 to
    `max_depth` keys, of which none is a prefix of another."""
    return _place(draw, draw(_integers(min_states, max_states)), max_depth, ())


@st.composite
def _trees(
    draw: st.DrawFn,
    min_states: int,
    max_states: int,
    max_depth: int,
    kinds: tuple[type[State], ...],
    shapes: st.SearchStrategy[tuple[int, ...]],
    dtypes: tuple[Any, ...],
    quantities: bool,
    dict_values: bool,
) -> dict:
    paths = draw(_paths(min_states, max_states, max_depth))
    flat: dict[Path, State] = {}
    for path in paths:
        kind = draw(st.sampled_from(kinds))
        if issubclass(kind, RandomState):
            flat[path] = kind(jax.random.key(draw(_SEEDS)))
        else:
            flat[path] = kind(draw(draw(_value(shapes, dtypes, quantities, dict_values))))
    return unflatten(flat)


def state_trees(
    *,
    min_states: int = 1,
    max_states: int = 6,
    max_depth: int = 3,
    kinds: Sequence[type[State]] = DEFAULT_KINDS,
    shapes: st.SearchStrategy[tuple[int, ...]] | None = None,
    dtypes: Sequence[Any] = (jnp.float32,),
    quantities: bool = False,
    dict_values: bool = False,
) -> st.SearchStrategy[dict]:
    """Random state trees: nested dicts of random depth whose leaves are states of
    random `kinds`, holding arrays of random `shapes` and `dtypes`; optionally
    brainunit quantities (float dtypes only) and dict-valued states.

    Every tree has between `min_states` and `max_states` states (inclusive),
    each at a path of 1 to `max_depth` keys. Keys are non-empty identifiers of
    ASCII letters (either case), digits and underscores, up to 8 characters
    (``'w'``, ``'lif'``, ``'layer_0'``, ``'V'``), and shrink towards short
    lowercase ones. A `RandomState` kind (or a subclass of it) holds a typed
    PRNG key, ``jax.random.key(seed)`` with a drawn seed, whatever `shapes`
    and `dtypes` say, so that every tree is valid for every transform. Raises
    `ValueError` unless ``0 <= min_states <= max_states``, ``max_depth >= 1``
    and `kinds` is non-empty.

    Examples:
        >>> import purestate as ps
        >>> from hypothesis import given, settings
        >>> @settings(max_examples=5)
        ... @given(ps.testing.state_trees(quantities=True))
        ... def test_flatten_sorted(tree):
        ...     paths = list(ps.flatten(tree))
        ...     assert paths == sorted(paths)
        >>> test_flatten_sorted()
        >>> kinds = (ps.ParamState, ps.RandomState)
        >>> @settings(max_examples=5)
        ... @given(ps.testing.state_trees(min_states=2, max_states=4, kinds=kinds))
        ... def test_sizes(tree):
        ...     assert 2 <= len(ps.flatten(tree)) <= 4
        >>> test_sizes()
    """
    if min_states < 0:
        raise ValueError(f"min_states must be >= 0; got {min_states}.")
    if min_states > max_states:
        raise ValueError(
            f"min_states must be <= max_states; got min_states={min_states} > "
            f"max_states={max_states}."
        )
    if max_depth < 1:
        raise ValueError(f"max_depth must be >= 1; got {max_depth}.")
    if not kinds:
        raise ValueError("kinds must name at least one State kind; got none.")
    if shapes is None:
        shapes = hnp.array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=3)
    return _trees(
        min_states,
        max_states,
        max_depth,
        tuple(kinds),
        shapes,
        tuple(dtypes),
        quantities,
        dict_values,
    )


def _globs(paths: list[Path]) -> st.SearchStrategy[str]:
    prefixes = sorted({"/".join(p[:i]) for p in paths for i in range(1, len(p) + 1)})
    exact = st.sampled_from(prefixes)
    wild = st.sampled_from(prefixes).map(lambda s: s.rsplit("/", 1)[0] + "/*" if "/" in s else "*")
    last = st.sampled_from(sorted({p[-1] for p in paths})).map(lambda k: "*" + k)
    return st.one_of(exact, wild, last)


def subtrees(tree: dict) -> st.SearchStrategy[dict]:
    """Random subtrees of `tree` (any subset of its states, possibly empty).

    Examples:
        >>> import purestate as ps
        >>> from hypothesis import given, settings
        >>> tree = {"a": ps.ParamState(1.0), "b": {"c": ps.ParamState(2.0)}}
        >>> @settings(max_examples=5)
        ... @given(ps.testing.subtrees(tree))
        ... def test_subset(sub):
        ...     assert set(ps.flatten(sub)) <= set(ps.flatten(tree))
        >>> test_subset()
    """
    items = sorted(flatten(tree).items())
    return st.lists(st.sampled_from(items), unique_by=lambda kv: kv[0]).map(
        lambda kvs: unflatten(dict(kvs))
    )


def _path_predicates(paths: list[Path]) -> st.SearchStrategy:
    def depth_at_least(n: int) -> Callable[[Path, State], bool]:
        def predicate(path: Path, state: State) -> bool:
            return len(path) >= n

        predicate.__name__ = f"depth>={n}"
        return predicate

    def ndim_is(n: int) -> Callable[[Path, State], bool]:
        def predicate(path: Path, state: State) -> bool:
            return getattr(state.value, "ndim", -1) == n

        predicate.__name__ = f"ndim=={n}"
        return predicate

    return st.one_of(st.integers(1, 3).map(depth_at_least), st.integers(0, 2).map(ndim_is))


def selectors(tree: dict, kinds: Sequence[type[State]] = DEFAULT_KINDS) -> st.SearchStrategy:
    """Random selectors over `tree`, in every accepted form: kinds, globs made from
    its paths, predicates, subtrees, tuples, ``...``, ``None`` and nested
    ``Not``/``All``/``Any``.

    Examples:
        >>> import purestate as ps
        >>> from hypothesis import given, settings, strategies as st
        >>> @settings(max_examples=5)
        ... @given(st.data())
        ... def test_select_is_subset(data):
        ...     tree = data.draw(ps.testing.state_trees())
        ...     sel = data.draw(ps.testing.selectors(tree))
        ...     assert set(ps.flatten(ps.select(tree, sel))) <= set(ps.flatten(tree))
        >>> test_select_is_subset()
    """
    paths = list(flatten(tree))
    base = st.one_of(
        st.sampled_from(list(kinds)),
        _globs(paths) if paths else st.just("nothing-here"),
        _path_predicates(paths),
        subtrees(tree),
        st.sampled_from([..., None]),
    )

    def extend(children: st.SearchStrategy) -> st.SearchStrategy:
        return st.one_of(
            children.map(Not),
            st.lists(children, min_size=1, max_size=3).map(lambda s: All(*s)),
            st.lists(children, min_size=1, max_size=3).map(lambda s: AnyOf(*s)),
            st.lists(children, min_size=1, max_size=3).map(tuple),
        )

    return st.recursive(base, extend, max_leaves=4)
