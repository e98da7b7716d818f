"""Progress bars of compiled loops: one tqdm bar per loop run, reaching the
loop's length exactly, inside jit and under vmap; results are unchanged."""

import threading
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tqdm
import tqdm.auto
import tqdm.std

import purestate as ps


class RecordingBar:
    """Stands in for `tqdm.tqdm`: records what a loop asks of its bar."""

    bars: ClassVar[list] = []
    lock = threading.Lock()

    def __init__(self, iterable=None, desc=None, total=None, **kwargs):
        self.total, self.desc, self.kwargs = total, desc, kwargs
        self.n, self.updates, self.closed, self.max_seen = 0, [], False, 0
        with RecordingBar.lock:
            RecordingBar.bars.append(self)

    def update(self, n=1):
        assert not self.closed, "update after close"
        self.n += n
        self.updates.append(n)
        self.max_seen = max(self.max_seen, self.n)

    def close(self):
        self.closed = True

    def refresh(self, *args, **kwargs):
        pass

    def set_description(self, desc=None, refresh=True):
        self.desc = desc

    def set_postfix(self, *args, **kwargs):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@pytest.fixture
def bars(monkeypatch):
    """The bars that loops create during the test (after every callback ran)."""
    RecordingBar.bars = []
    for module in (tqdm, tqdm.auto, tqdm.std):
        monkeypatch.setattr(module, "tqdm", RecordingBar)

    def finished():
        jax.effects_barrier()
        return list(RecordingBar.bars)

    return finished


def assert_complete(bar, total, desc=None):
    assert bar.total == total
    assert bar.n == total and bar.max_seen == total, bar.updates
    assert all(k > 0 for k in bar.updates), bar.updates
    if desc is not None:
        assert bar.desc == desc


def step(states, x):
    v = 0.9 * states["v"].value + x
    return jnp.sum(v), ps.set(states, "v", v)


def step2(states, x, scale):
    return step(states, x * scale)


def states0(width=2):
    return {"v": ps.ShortTermState(jnp.zeros(width)), "w": ps.ParamState(jnp.ones(width))}


def raw_ys(xs):
    return jax.lax.scan(lambda v, x: (0.9 * v + x, jnp.sum(0.9 * v + x)), jnp.zeros(2), xs)


def run_loop(kind, xs, progress, **kwargs):
    if kind == "scan":
        return ps.compile.scan(step, states0(), xs, progress=progress, **kwargs)
    if kind == "for_loop":
        return ps.compile.for_loop(step2, states0(), xs, 2 * jnp.ones(len(xs)), progress=progress)
    if kind == "checkpointed_scan":
        return ps.compile.checkpointed_scan(step, states0(), xs, progress=progress, **kwargs)
    return ps.compile.checkpointed_for_loop(
        step2, states0(), xs, 2 * jnp.ones(len(xs)), progress=progress, **kwargs
    )


KINDS = ["scan", "for_loop", "checkpointed_scan", "checkpointed_for_loop"]
PROGRESS = [True, 7, ps.compile.Progress(every=4, desc="sim"), ps.compile.Progress()]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("progress", PROGRESS, ids=["true", "int", "every_desc", "default"])
def test_one_bar_per_loop_run_reaches_the_length(bars, kind, progress):
    n = 30
    xs = jnp.linspace(-1.0, 1.0, n * 2).reshape(n, 2)
    ys, new = run_loop(kind, xs, progress)
    recorded = bars()
    assert len(recorded) == 1, [b.total for b in recorded]
    desc = progress.desc if isinstance(progress, ps.compile.Progress) else None
    assert_complete(recorded[0], n, desc)
    assert len(recorded[0].updates) > 1  # it advances while the loop runs
    # Results with a bar equal those without one, and the raw lax.scan.
    ref_ys, ref_new = run_loop(kind, xs, None)
    np.testing.assert_allclose(ys, ref_ys, rtol=1e-6)
    ps.testing.assert_trees_allclose(new, ref_new, rtol=1e-6)
    scale = 2.0 if "for_loop" in kind else 1.0
    v, expected = raw_ys(xs * scale)
    np.testing.assert_allclose(ys, expected, rtol=1e-5)
    np.testing.assert_allclose(new["v"].value, v, rtol=1e-5)
    assert len(bars()) == 1  # the run without progress made no bar


@pytest.mark.parametrize(("n", "every"), [(20, 5), (23, 5), (5, 9), (1, 1)])
def test_an_int_updates_every_that_many_steps(bars, n, every):
    xs = jnp.ones((n, 2))
    ys, _ = ps.compile.scan(step, states0(), xs, progress=every)
    (bar,) = bars()
    assert_complete(bar, n)
    assert len(bar.updates) == -(-n // every)  # ceil(n / every) updates
    np.testing.assert_allclose(ys, raw_ys(xs)[1], rtol=1e-5)


def test_true_gives_about_a_hundred_updates(bars):
    n = 1000
    ps.compile.scan(step, states0(), jnp.ones((n, 2)) * 1e-3, progress=True)
    (bar,) = bars()
    assert_complete(bar, n)
    assert 50 <= len(bar.updates) <= 200


def test_a_reversed_scan_with_unroll_reaches_the_length(bars):
    xs = jnp.linspace(0.0, 1.0, 26).reshape(13, 2)
    ys, new = ps.compile.scan(step, states0(), xs, reverse=True, unroll=2, progress=4)
    (bar,) = bars()
    assert_complete(bar, 13)
    v, ref = jax.lax.scan(
        lambda v, x: (0.9 * v + x, jnp.sum(0.9 * v + x)), jnp.zeros(2), xs, reverse=True
    )
    np.testing.assert_allclose(ys, ref, rtol=1e-5)
    np.testing.assert_allclose(new["v"].value, v, rtol=1e-5)


def test_scan_with_init_and_a_bar(bars):
    def count(states, c, x):
        y, states = step(states, x)
        return (c + 1, y * c), states

    xs = jnp.ones((9, 2))
    (c, ys), _ = ps.compile.scan(count, states0(), xs, init=jnp.int32(0), progress=2)
    (c_ref, ys_ref), _ = ps.compile.scan(count, states0(), xs, init=jnp.int32(0))
    (bar,) = bars()
    assert_complete(bar, 9)
    assert int(c) == int(c_ref) == 9
    np.testing.assert_allclose(ys, ys_ref)


def test_every_call_of_a_jitted_loop_completes_a_new_bar(bars):
    @ps.compile.jit
    def simulate(states, xs):
        return ps.compile.scan(step, states, xs, progress=ps.compile.Progress(every=3, desc="j"))

    xs = jnp.ones((10, 2))
    ys1, s1 = simulate(states0(), xs)
    first = bars()
    assert len(first) == 1
    assert_complete(first[0], 10, "j")
    ys2, _ = simulate(s1, xs)
    recorded = bars()
    assert len(recorded) == 2 and recorded[0] is first[0]
    assert_complete(recorded[1], 10, "j")
    ref1, ref_s1 = ps.compile.scan(step, states0(), xs)
    ref2, _ = ps.compile.scan(step, ref_s1, xs)
    np.testing.assert_allclose(ys1, ref1, rtol=1e-6)
    np.testing.assert_allclose(ys2, ref2, rtol=1e-6)


def test_two_loops_in_one_jitted_function_make_two_bars(bars):
    @ps.compile.jit
    def twice(states, xs):
        _, states = ps.compile.scan(step, states, xs, progress=2)
        return ps.compile.for_loop(step, states, xs[:5], progress=ps.compile.Progress(2, "b"))

    twice(states0(), jnp.ones((8, 2)))
    recorded = sorted(bars(), key=lambda b: b.total)
    assert [b.total for b in recorded] == [5, 8]
    assert_complete(recorded[0], 5, "b")
    assert_complete(recorded[1], 8)


@pytest.mark.parametrize("kind", ["scan", "checkpointed_scan"])
def test_one_bar_per_loop_run_under_vmap(bars, kind):
    loop = getattr(ps.compile, kind)

    def run(states, xs):
        return loop(step, states, xs, progress=3)

    xs = jnp.linspace(0.0, 1.0, 4 * 11 * 2).reshape(4, 11, 2)
    states = {"v": ps.ShortTermState(jnp.zeros((4, 2))), "w": ps.ParamState(jnp.ones(2))}
    ys, new = ps.augment.vmap(run, in_states=ps.ShortTermState)(states, xs)
    recorded = bars()
    assert len(recorded) == 1, [b.updates for b in recorded]
    assert_complete(recorded[0], 11)
    v, ref = jax.vmap(raw_ys)(xs)
    np.testing.assert_allclose(ys, ref, rtol=1e-5)
    np.testing.assert_allclose(new["v"].value, v, rtol=1e-5)


def test_one_bar_per_run_under_jit_of_vmap(bars):
    run = ps.compile.jit(
        ps.augment.vmap(
            lambda s, xs: ps.compile.scan(step, s, xs, progress=2), in_states=ps.ShortTermState
        )
    )
    xs = jnp.ones((3, 6, 2))
    states = {"v": ps.ShortTermState(jnp.zeros((3, 2))), "w": ps.ParamState(jnp.ones(2))}
    run(states, xs)
    run(states, xs)
    recorded = bars()
    assert len(recorded) == 2
    for bar in recorded:
        assert_complete(bar, 6)


def test_one_bar_under_reverse_mode_through_a_checkpointed_loop(bars):
    def loss(states, xs):
        ys, states = ps.compile.checkpointed_scan(step, states, xs, block_size=3, progress=2)
        return jnp.sum(ys * states["w"].value[0]), states

    xs = jnp.linspace(0.0, 1.0, 20).reshape(10, 2)
    grads, _ = ps.augment.grad(loss, ps.ParamState)(states0(), xs)
    recorded = bars()
    assert len(recorded) == 1, [b.updates for b in recorded]
    assert_complete(recorded[0], 10)
    ref = jax.grad(lambda w: jnp.sum(raw_ys(xs)[1] * w[0]))(jnp.ones(2))
    np.testing.assert_allclose(grads["w"].value, ref, rtol=1e-5)


def test_a_forward_run_between_a_vjp_and_its_backward_pass_keeps_both_bars_whole(bars):
    # The backward pass of a checkpointed loop replays its blocks last to first,
    # here after another forward run of the same compiled loop.
    def loss(w, xs):
        states = {**states0(), "w": ps.ParamState(w)}
        ys, states = ps.compile.checkpointed_scan(step, states, xs, block_size=3, progress=3)
        return jnp.sum(ys) * w[0]

    xs = jnp.linspace(0.0, 1.0, 20).reshape(10, 2)
    _, backward = jax.vjp(lambda w: loss(w, xs), jnp.ones(2))
    jax.vjp(lambda w: loss(w, xs), 2 * jnp.ones(2))
    (grad,) = backward(jnp.float32(1.0))
    recorded = bars()
    assert len(recorded) == 2, [b.updates for b in recorded]
    for bar in recorded:
        assert_complete(bar, 10)
    ref = jax.grad(lambda w: jnp.sum(raw_ys(xs)[1]) * w[0])(jnp.ones(2))
    np.testing.assert_allclose(grad, ref, rtol=1e-5)


def test_under_vmap_each_update_is_one_host_call(bars):
    # 4 lanes, 11 steps, every 3: updates after 3, 6, 9 and 11 steps, once each.
    run = ps.augment.vmap(
        lambda s, xs: ps.compile.scan(step, s, xs, progress=3), in_states=ps.ShortTermState
    )
    states = {"v": ps.ShortTermState(jnp.zeros((4, 2))), "w": ps.ParamState(jnp.ones(2))}
    run(states, jnp.ones((4, 11, 2)))
    (bar,) = bars()
    assert bar.updates == [3, 3, 3, 2]


@pytest.mark.parametrize("kind", ["scan", "checkpointed_scan"])
def test_one_bar_per_run_under_pmap(bars, kind):
    loop = getattr(ps.compile, kind)
    n = jax.local_device_count()
    run = ps.augment.pmap(lambda s, xs: loop(step, s, xs, progress=3), in_states=ps.ShortTermState)
    xs = jnp.linspace(0.0, 1.0, n * 11 * 2).reshape(n, 11, 2)
    states = {"v": ps.ShortTermState(jnp.zeros((n, 2))), "w": ps.ParamState(jnp.ones(2))}
    ys, new = run(states, xs)
    run(states, xs)
    recorded = bars()
    assert len(recorded) == 2, [b.updates for b in recorded]
    for bar in recorded:
        assert_complete(bar, 11)
    v, ref = jax.pmap(raw_ys)(xs)
    np.testing.assert_allclose(ys, ref, rtol=1e-5)
    np.testing.assert_allclose(new["v"].value, v, rtol=1e-5)


def test_one_bar_per_run_under_shard_map(bars):
    from jax.sharding import Mesh
    from jax.sharding import PartitionSpec as P

    n = jax.local_device_count()
    mesh = Mesh(np.array(jax.devices()), ("d",))

    def run(states, xs):  # each device simulates its own neurons (xs: time x neurons)
        return ps.compile.scan(step, states, xs, progress=4)

    sharded = ps.augment.shard_map(
        run, mesh=mesh, in_specs=(P(None, "d"),), out_specs=P("d"), state_specs={"v": P("d")}
    )
    xs = jnp.linspace(0.0, 1.0, 9 * 2 * n).reshape(9, 2 * n)
    states = {"v": ps.ShortTermState(jnp.zeros(2 * n)), "w": ps.ParamState(jnp.ones(2))}
    _, new = sharded(states, xs)
    (bar,) = bars()
    assert_complete(bar, 9)
    v, _ = jax.lax.scan(lambda v, x: (0.9 * v + x, None), jnp.zeros(2 * n), xs)
    np.testing.assert_allclose(new["v"].value, v, rtol=1e-5)


def test_no_bar_without_progress_or_for_an_empty_loop(bars):
    ps.compile.scan(step, states0(), jnp.ones((5, 2)))
    ps.compile.scan(step, states0(), jnp.ones((5, 2)), progress=False)
    ps.compile.checkpointed_scan(step, states0(), jnp.ones((5, 2)), progress=None)
    ys, _ = ps.compile.scan(step, states0(), jnp.ones((0, 2)), progress=True)
    assert ys.shape == (0,)
    assert [b for b in bars() if b.total] == []


@pytest.mark.parametrize("progress", ["yes", 0, -3, 2.5, [10]])
def test_bad_progress_values_are_errors(progress):
    with pytest.raises((TypeError, ValueError), match="progress|Progress"):
        ps.compile.scan(step, states0(), jnp.ones((5, 2)), progress=progress)


@pytest.mark.parametrize("every", [0, -1, 1.5, True])
def test_progress_rejects_a_bad_every(every):
    with pytest.raises((TypeError, ValueError), match="every"):
        ps.compile.Progress(every=every)


def test_the_real_tqdm_bar_writes_the_total_to_stderr(capsys):
    xs = jnp.ones((12, 2))
    ps.compile.scan(step, states0(), xs, progress=ps.compile.Progress(every=4, desc="lif run"))
    jax.effects_barrier()
    err = capsys.readouterr().err
    assert "lif run" in err
    assert "12/12" in err
