"""Run every benchmark case and write the results into docs/performance.md.

Run: ``.venv/bin/python benchmarks/run_all.py [--quick] [--no-write]``
(``make bench`` runs it without flags). The Markdown table and the PNG plots
replace whatever lies between ``<!-- bench:start -->`` and
``<!-- bench:end -->`` in docs/performance.md; the rest of the page is left
alone. The raw rows also go to ``benchmarks/results.json``. ``--no-write``
only prints.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_checkpoint
import bench_coba
import bench_compile
import bench_io
import bench_lif
import bench_sharded
import bench_train_step
import bench_vmap
import jax
from _harness import BASELINE, Row, format_value, print_rows
from _models import STATE_TREE

ROOT = HERE.parent
PAGE = ROOT / "docs" / "performance.md"
IMG = ROOT / "docs" / "img"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"
CASES = [
    bench_train_step,
    bench_vmap,
    bench_compile,
    bench_lif,
    bench_checkpoint,
    bench_io,
    bench_sharded,
    bench_coba,
]
IMPLS = ["raw JAX", "purestate", STATE_TREE, "brainstate 0.6.0", "Flax NNX", "Equinox"]


def versions() -> str:
    from _peer_worker import describe

    found = []
    for name in ("jax", "purestate", "flax", "equinox"):
        try:
            module = __import__(name)
            found.append(f"{name} {getattr(module, '__version__', '?')}")
        except Exception:
            found.append(f"{name} (not installed)")
    return ", ".join([*found, describe()])


def machine() -> str:
    cores = os.cpu_count()
    return (
        f"{platform.processor() or platform.machine()}, {cores} CPU cores, "
        f"JAX backend {jax.default_backend()}, Python {platform.python_version()}"
    )


def cell(row: Row | None, state_tree: Row | None = None) -> str:
    if row is None:
        return ""
    if row.seconds is None:
        return f"n/a ({row.note})"
    text = format_value(row)
    if row.rate is not None:
        text += f", {row.rate / 1e6:.1f} M/s"
    if row.impl != BASELINE and row.ratio is not None:
        text += f" (**{row.ratio:.2f}x**)" if row.impl == "purestate" else f" ({row.ratio:.2f}x)"
    if row.impl == "purestate" and row.seconds and state_tree and state_tree.seconds:
        text += f"; {row.seconds / state_tree.seconds:.2f}x {STATE_TREE}"
    return text


def table(rows: list[Row]) -> str:
    cases = list(dict.fromkeys(r.case for r in rows))
    by = {(r.case, r.impl): r for r in rows}
    lines = [
        "| case | " + " | ".join(IMPLS) + " |",
        "| --- | " + " | ".join("---" for _ in IMPLS) + " |",
    ]
    for case in cases:
        ref = by.get((case, STATE_TREE))
        cells = [cell(by.get((case, i)), ref) for i in IMPLS]
        lines.append(f"| {case} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(module, rows: list[Row]) -> str | None:
    """A bar chart of each implementation's time relative to raw JAX."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    cases = list(dict.fromkeys(r.case for r in rows))
    by = {(r.case, r.impl): r for r in rows}
    impls = [i for i in IMPLS if any(by.get((c, i)) and by[c, i].ratio for c in cases)]
    width = 0.8 / max(1, len(impls))
    fig, ax = plt.subplots(figsize=(9, 0.6 + 0.55 * len(cases) * max(1, len(impls)) / 2.5))
    for k, impl in enumerate(impls):
        ys = [c_i + k * width for c_i in range(len(cases))]
        ratios = [(by.get((c, impl)).ratio or 0.0) if by.get((c, impl)) else 0.0 for c in cases]
        ax.barh(ys, ratios, height=width, label=impl)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks([c_i + width * (len(impls) - 1) / 2 for c_i in range(len(cases))])
    ax.set_yticklabels(cases, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("time relative to raw JAX (lower is better; 1 = raw JAX)")
    ax.set_title(module.TITLE)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    IMG.mkdir(parents=True, exist_ok=True)
    name = f"bench_{module.__name__.removeprefix('bench_')}.png"
    fig.savefig(IMG / name, dpi=110)
    plt.close(fig)
    return f"img/{name}"


READING = [
    "How to read the columns:",
    "",
    "- **raw JAX** is hand-written JAX on plain dicts of arrays: `jax.jit`, "
    "`jax.value_and_grad`, `jax.vmap`, `jax.lax.scan`.",
    f"- **{STATE_TREE}** is the same raw JAX function handed the purestate tree itself "
    "(`State` pytree nodes around the arrays), with no purestate transform. JAX "
    "flattens and rebuilds each `State` node through a Python callback on every call; "
    "this column is the reference for `ps.compile.jit`, which may add only O(1) "
    "work per call beyond it. `ps.compile.jit` avoids those callbacks: it hands "
    "`jax.jit` the values as a flat list and the tree's layout as a static argument, "
    "and rebuilds the tree in a plain loop. The purestate cell gives both ratios.",
    "- Every result is waited for with `jax.block_until_ready`, which flattens it: for "
    "the State-tree columns that is one more Python callback per returned state, a "
    "cost a training loop that does not wait on its states every step does not pay.",
    "- **brainstate 0.6.0** runs the same computation on its mutable `State` "
    "objects through `brainstate.transform` (`grad`, `jit`, `vmap`, `for_loop`). It "
    "needs Python 3.12, so it runs in its own process (the environment "
    "`benchmarks/bench_coba.py --setup` builds), timed round by round against the same "
    "raw JAX code in that process: its ratio is to raw JAX on {peer_jax} there, not "
    "to the raw JAX column. Its eager `grad` evaluates a cached trace of the function, "
    "so its eager figures are not op-by-op dispatch like the others'.",
    "- **Flax NNX** uses `nnx.jit`, `nnx.value_and_grad`, `nnx.vmap` with "
    "`nnx.StateAxes`; **Equinox** uses `eqx.filter_jit`, `eqx.filter_value_and_grad`, "
    "`eqx.filter_vmap` (`filter_jit` waits for the result on every call; so does "
    "every implementation here, because each call is timed to completion).",
    "- The machine was shared with other work while this ran; implementations are "
    "interleaved round by round so that load hits them alike, and the ratios are "
    "steadier than the absolute times.",
    "- The jitted `vmap` case is unstable from run to run on this machine: both State-tree "
    "variants (purestate and JAX on State tree) compile the same HLO as raw JAX but have "
    "measured anywhere from 0.5x to 2x of it in different runs, and purestate from 0.6x to "
    "1.35x of JAX on State tree. Its dispatch (the Python side of a call, not waiting for "
    "the result) is that of `ps.compile.jit` on the same step without `vmap`, about 21 µs "
    "here. Read that row as noise around the State-tree column.",
]


def peer_jax() -> str:
    """The jax version brainstate 0.6.0 ran on (its Python 3.12 environment)."""
    from _peer_worker import environment

    return f"jax {environment().get('jax', '?')}"


def where_time_goes(rows: list[Row]) -> list[str]:
    """Per-state cost of the `State` nodes and purestate's own per-call cost,
    from the jit-overhead rows (a jitted update of n states of shape (2,))."""
    by = {(r.case, r.impl): r.seconds for r in rows}
    lines = []
    for n in (10, 1_000):
        case = f"jit per call, {n:,} states"
        raw, tree, pure = (by.get((case, i)) for i in (BASELINE, STATE_TREE, "purestate"))
        if not (raw and tree):
            continue
        line = (
            f"- {n:,} states: handed to `jax.jit` as they are, the `State` nodes cost "
            f"{(tree - raw) / n * 1e6:.2f} µs per state per call ({tree / raw:.2f}x raw JAX)"
        )
        if pure:
            line += (
                f"; `ps.compile.jit`, which takes the tree apart itself, costs "
                f"{(pure - raw) / n * 1e6:.2f} µs per state per call ({pure / raw:.2f}x raw "
                f"JAX, {(pure / tree - 1) * 100:+.1f} % against JAX on the State tree)"
            )
        lines.append(line + ".")
    if not lines:
        return []
    return [
        "**Where the time goes** (from the jit-overhead rows above):",
        "",
        *lines,
        "",
    ]


def section(all_rows: list[tuple[object, list[Row]]], elapsed: float, quick: bool) -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        f"Measured {now} by `make bench`{' (--quick)' if quick else ''} in {elapsed / 60:.1f} min "
        f"on {machine()}; {versions()}.",
        "",
        "Each cell is the median time per call over interleaved rounds after warm-up "
        "(every call waited for with `jax.block_until_ready`), and in brackets the ratio "
        "to raw JAX in the same process (below 1: faster). n/a says why an "
        "implementation could not run a case.",
        "",
        *(line.replace("{peer_jax}", peer_jax()) for line in READING),
        "",
    ]
    for module, rows in all_rows:
        if hasattr(module, "markdown"):
            # a case with its own columns (not one implementation per column)
            parts += [f"### {module.TITLE}", "", module.markdown(rows), ""]
            continue
        parts += [f"### {module.TITLE}", "", table(rows), ""]
        image = plot(module, rows)
        if image:
            parts += [f"![{module.TITLE}]({image})", ""]
        parts += where_time_goes(rows)
    return "\n".join(parts)


def write_page(text: str) -> None:
    page = PAGE.read_text() if PAGE.exists() else f"# Performance\n\n{START}\n{END}\n"
    if START not in page or END not in page:
        page = page.rstrip("\n") + f"\n\n{START}\n{END}\n"
    head, rest = page.split(START, 1)
    _, tail = rest.split(END, 1)
    PAGE.write_text(f"{head}{START}\n{text}\n{END}{tail}")


def main() -> None:
    quick = "--quick" in sys.argv
    start = time.perf_counter()
    all_rows = []
    for module in CASES:
        print(f"== {module.TITLE}", flush=True)
        rows = module.run(quick=quick)
        if all(isinstance(r, Row) for r in rows):
            print_rows(rows)  # (COBA prints its rows as they come)
        all_rows.append((module, rows))
    elapsed = time.perf_counter() - start
    if "--no-write" not in sys.argv:
        flat = [
            {"benchmark": module.__name__, **(dataclasses.asdict(r) if isinstance(r, Row) else r)}
            for module, rows in all_rows
            for r in rows
        ]
        (HERE / "results.json").write_text(json.dumps(flat, indent=1))
        write_page(section(all_rows, elapsed, quick))
        print(f"wrote {PAGE.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
