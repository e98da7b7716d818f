"""Time per call of ps.select / ps.split / ps.merge on trees of 10 to 10,000 states.

Run: ``.venv/bin/python benchmarks/bench_select.py``. Decisions are cached per
(path, kind, selector), so warm calls do no matching work; what remains is one
walk over the dicts, which a plain ``jax.tree.flatten`` of the same tree is
shown beside for scale.
"""

from __future__ import annotations

import timeit

import jax
import jax.numpy as jnp

import purestate as ps


def make_tree(n_states: int) -> dict:
    layers = max(1, n_states // 10)
    tree = {}
    for i in range(layers):
        layer = {}
        for j in range(n_states // layers):
            kind = ps.ParamState if j % 2 == 0 else ps.ShortTermState
            layer[f"s{j}"] = kind(jnp.zeros(2))
        tree[f"layer{i}"] = layer
    return tree


def per_call_us(fn, number: int) -> float:
    fn()  # warm the decision cache
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


def main() -> list[tuple[str, int, float]]:
    rows = []
    for n in (10, 1_000, 10_000):
        tree = make_tree(n)
        number = max(3, 20_000 // n)
        params, rest = ps.split(tree, ps.ParamState)
        cases = {
            "select(ParamState)": lambda t=tree: ps.select(t, ps.ParamState),
            "select('layer1*/s*')": lambda t=tree: ps.select(t, "layer1*/s*"),
            "split(ParamState)": lambda t=tree: ps.split(t, ps.ParamState),
            "merge(params, rest)": lambda p=params, r=rest: ps.merge(p, r),
            "jax.tree.flatten (reference)": lambda t=tree: jax.tree.flatten(t),
        }
        for name, fn in cases.items():
            rows.append((name, n, per_call_us(fn, number)))
    return rows


if __name__ == "__main__":
    print(f"{'operation':30s} {'states':>7s} {'µs/call':>10s}")
    for name, n, us in main():
        print(f"{name:30s} {n:7d} {us:10.1f}")
