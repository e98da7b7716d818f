"""The main demo's training loop against the same network written by hand in
raw JAX, in one process, interleaved epoch by epoch.

Run: ``.venv/bin/python benchmarks/bench_demo.py [--epochs N]``. Both versions
use the same data order, initial weights, time steps and Adam settings; the
script reports seconds per epoch (after a warm-up epoch that compiles),
compile time, and the final held-out accuracy of each.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import brainunit as u
import jax
import jax.numpy as jnp
import numpy as np
import optax

import purestate as ps

DEMO_PATH = Path(__file__).resolve().parents[1] / "examples" / "demo.py"
spec = importlib.util.spec_from_file_location("purestate_demo", DEMO_PATH)
demo = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = demo
spec.loader.exec_module(demo)

DT_MS, TAU_MS, GAIN = 1.0, 10.0, 2.0


@jax.custom_jvp
def spike(x):
    return (x >= 0).astype(x.dtype)


@spike.defjvp
def _spike_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    return spike(x), 0.3 * jnp.maximum(1.0 - jnp.abs(x), 0.0) * dx


def raw_training(n_steps, learning_rate):
    """The demo's network in raw JAX: V in mV, currents in mA, R = 1 ohm."""
    decay = np.exp(-DT_MS / TAU_MS)
    tx = optax.adam(learning_rate)

    def run_one(params, image):
        current = image @ params["w1"] + params["b1"]

        def step(carry, _):
            v, r = carry
            v = v - spike(v - 1.0)  # soft reset with V_th = 1 mV, V_reset = 0
            v_inf = GAIN * current
            v = v_inf + (v - v_inf) * decay
            s = spike(v - 1.0)
            r = decay * r + s @ params["w2"] + params["b2"]
            return (v, r), r

        init = (jnp.zeros_like(current), jnp.zeros(params["b2"].shape))
        _, scores = jax.lax.scan(step, init, None, length=n_steps)
        return scores.mean(0)

    def loss_fn(params, images, labels):
        scores = jax.vmap(run_one, in_axes=(None, 0))(params, images)
        return optax.softmax_cross_entropy_with_integer_labels(scores, labels).mean()

    @jax.jit
    def train_step(params, opt_state, images, labels):
        loss, grads = jax.value_and_grad(loss_fn)(params, images, labels)
        updates, opt_state = tx.update(grads, opt_state)
        return loss, optax.apply_updates(params, updates), opt_state

    @jax.jit
    def predict(params, images):
        return jnp.argmax(jax.vmap(run_one, in_axes=(None, 0))(params, images), -1)

    return tx, train_step, predict


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--lr", type=float, default=3e-3)
    args = parser.parse_args()

    x_train, x_test, y_train, y_test = demo.load_data(0)
    model = demo.SpikingClassifier(64, 128, 10, gain=GAIN)
    states = model.init(jax.random.key(0), batch_size=args.batch)
    rest = ps.select(states, ps.ShortTermState)
    optimizer, ps_step, ps_predict = demo.make_training(model, args.steps, args.lr)
    states = optimizer.init(states)
    params = {
        "w1": ps.get(states, "encoder/weight"),
        "b1": ps.get(states, "encoder/bias"),
        "w2": ps.get(states, "decoder/weight"),
        "b2": ps.get(states, "decoder/bias"),
    }
    tx, raw_step, raw_predict = raw_training(args.steps, args.lr)
    opt_state = tx.init(params)

    rng = np.random.default_rng(0)
    n_batches = len(x_train) // args.batch
    times = {"purestate": [], "raw JAX": []}
    with ps.environ.context(dt=DT_MS * u.ms):
        for _ in range(args.epochs + 1):
            order = rng.permutation(len(x_train))
            batches = [order[b * args.batch : (b + 1) * args.batch] for b in range(n_batches)]
            start = time.perf_counter()
            for idx in batches:
                loss, states = ps_step(states, x_train[idx], y_train[idx], rest)
            jax.block_until_ready(states)
            times["purestate"].append(time.perf_counter() - start)
            start = time.perf_counter()
            for idx in batches:
                raw_loss, params, opt_state = raw_step(
                    params, opt_state, x_train[idx], y_train[idx]
                )
            jax.block_until_ready(params)
            times["raw JAX"].append(time.perf_counter() - start)
        ps_acc = demo.accuracy(ps_predict, states, x_test, y_test, args.batch, rest)
    n = len(x_test) // args.batch * args.batch
    raw_acc = float(np.mean(np.asarray(raw_predict(params, x_test[:n])) == y_test[:n]))

    print(
        f"{'implementation':12s} {'1st epoch (compile)':>20s} {'s/epoch (median)':>17s} {'accuracy':>9s}"
    )
    for name, acc in (("purestate", ps_acc), ("raw JAX", raw_acc)):
        t = times[name]
        print(f"{name:12s} {t[0]:20.2f} {statistics.median(t[1:]):17.3f} {acc:9.3f}")
    ratio = statistics.median(times["purestate"][1:]) / statistics.median(times["raw JAX"][1:])
    print(
        f"purestate / raw JAX per epoch: {ratio:.2f}x; final losses {float(loss):.4f} vs {float(raw_loss):.4f}"
    )


if __name__ == "__main__":
    main()
