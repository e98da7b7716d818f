"""Train a spiking network on scikit-learn's bundled `digits` with purestate.

Each 8x8 image becomes a constant input current over `T` time steps into a
hidden layer of LIF neurons (surrogate gradients); a leaky-integrator readout
gives the class scores. The pieces:

* `ps.compile.scan` runs one sample over time;
* `ps.augment.vmap` runs the batch, with the membrane potentials in `in_states`;
* `ps.augment.grad` differentiates the loss with respect to `ParamState`s;
* `ps.optim.Optimizer(optax.adam)` updates them, and `ps.compile.jit` compiles
  the whole training step;
* `ps.io.save` writes the trained network to disk, and `ps.io.restore` reads it
  back for a last evaluation.

Run: ``make demo`` (or ``python examples/demo.py --quick`` for a short run).
Writes ``demo_output/training.png``, ``demo_output/spikes.png`` and the
checkpoint ``demo_output/checkpoint``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import brainunit as u
import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from tqdm import tqdm

import purestate as ps

DT = 1.0 * u.ms


class SpikingClassifier(ps.nn.Module):
    """Linear -> LIF -> Linear -> leaky integrator, one time step per call."""

    encoder: ps.nn.Linear
    hidden: ps.nn.LIF
    decoder: ps.nn.Linear
    readout: ps.nn.LI
    gain: float

    def __init__(self, n_in: int, n_hidden: int, n_out: int, gain: float = 2.0):
        self.encoder = ps.nn.Linear(n_in, n_hidden)
        self.hidden = ps.nn.LIF(n_hidden, tau=10 * u.ms, spk_reset="soft")
        self.decoder = ps.nn.Linear(n_hidden, n_out)
        self.readout = ps.nn.LI(n_out, tau=10 * u.ms)
        self.gain = gain

    def __call__(self, states, image):
        current, states = self.call_child("encoder", states, image)
        spikes, states = self.call_child("hidden", states, self.gain * current * u.mA)
        drive, states = self.call_child("decoder", states, spikes)
        scores, states = self.call_child("readout", states, drive)
        return (scores, spikes), states


def run_sample(model, n_steps):
    """One sample over time: returns the time-averaged scores and the spikes."""

    def run(states, image):
        def step(states, _):
            return model(states, image)

        (scores, spikes), states = ps.compile.scan(step, states, None, length=n_steps)
        return (scores.mean(0), spikes), states

    return run


def make_training(model, n_steps, learning_rate):
    batch_run = ps.augment.vmap(run_sample(model, n_steps), in_states=ps.ShortTermState)

    def loss_fn(states, images, labels):
        (scores, _), states = batch_run(states, images)
        loss = optax.softmax_cross_entropy_with_integer_labels(scores, labels).mean()
        return loss, states

    optimizer = ps.optim.Optimizer(optax.adam(learning_rate))
    grad_fn = ps.augment.grad(loss_fn, ps.ParamState, return_value=True)

    @ps.compile.jit
    def train_step(states, images, labels, rest):
        states = ps.update(states, rest)  # every batch starts from resting potentials
        (grads, loss), states = grad_fn(states, images, labels)
        return loss, optimizer.update(states, grads)

    @ps.compile.jit
    def predict(states, images, rest):
        (scores, spikes), _ = batch_run(ps.update(states, rest), images)
        return (jnp.argmax(scores, axis=-1), spikes), states

    return optimizer, train_step, predict


def load_data(seed):
    digits = load_digits()
    images = (digits.data / 16.0).astype(np.float32)
    return train_test_split(
        images,
        digits.target.astype(np.int32),
        test_size=0.2,
        random_state=seed,
        stratify=digits.target,
    )


def accuracy(predict, states, images, labels, batch, rest):
    correct = 0
    n = len(images) // batch * batch
    for i in range(0, n, batch):
        (pred, _), _ = predict(states, images[i : i + batch], rest)
        correct += int((np.asarray(pred) == labels[i : i + batch]).sum())
    # The remainder goes through one padded batch, so every sample counts.
    if n < len(images):
        pad = batch - (len(images) - n)
        padded = np.concatenate([images[n:], np.zeros((pad, images.shape[1]), np.float32)])
        (pred, _), _ = predict(states, padded, rest)
        correct += int((np.asarray(pred)[: len(images) - n] == labels[n:]).sum())
    return correct / len(images)


def plot(history, spikes, out_dir: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(exist_ok=True)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
    ax1.plot(history["loss"])
    ax1.set(xlabel="training step", ylabel="loss", title="Training loss")
    ax2.plot(range(1, len(history["accuracy"]) + 1), history["accuracy"], marker="o")
    ax2.set(xlabel="epoch", ylabel="test accuracy", title="Held-out accuracy", ylim=(0, 1))
    fig.tight_layout()
    fig.savefig(out_dir / "training.png", dpi=120)
    plt.close(fig)

    t, neuron = np.nonzero(np.asarray(spikes))
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.scatter(t, neuron, s=3, c="k")
    ax.set(
        xlabel="time step (1 ms)", ylabel="hidden neuron", title="Hidden-layer spikes, one sample"
    )
    fig.tight_layout()
    fig.savefig(out_dir / "spikes.png", dpi=120)
    plt.close(fig)


def main(argv=None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run (smoke test)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--steps", type=int, default=12, help="time steps per sample")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("demo_output"))
    args = parser.parse_args(argv)
    epochs = args.epochs or (2 if args.quick else 30)

    start = time.perf_counter()
    x_train, x_test, y_train, y_test = load_data(args.seed)
    model = SpikingClassifier(64, args.hidden, 10)
    key = jax.random.key(args.seed)
    states = model.init(key, batch_size=args.batch)
    rest = ps.select(states, ps.ShortTermState)
    optimizer, train_step, predict = make_training(model, args.steps, args.lr)
    states = optimizer.init(states)
    print(ps.summary(ps.select(states, ps.Not("optimizer"))))

    rng = np.random.default_rng(args.seed)
    history = {"loss": [], "accuracy": []}
    n_batches = len(x_train) // args.batch
    with ps.environ.context(dt=DT):
        progress = tqdm(range(epochs), desc="training", unit="epoch")
        for _ in progress:
            order = rng.permutation(len(x_train))
            for b in range(n_batches):
                idx = order[b * args.batch : (b + 1) * args.batch]
                loss, states = train_step(states, x_train[idx], y_train[idx], rest)
                history["loss"].append(float(loss))
            acc = accuracy(predict, states, x_test, y_test, args.batch, rest)
            history["accuracy"].append(acc)
            progress.set_postfix(
                loss=f"{np.mean(history['loss'][-n_batches:]):.3f}", test_acc=f"{acc:.3f}"
            )
        (_, spikes), _ = predict(states, x_test[: args.batch], rest)
    elapsed = time.perf_counter() - start
    final = history["accuracy"][-1]
    print(f"test accuracy on the held-out 20% ({len(x_test)} images): {final:.2%}")
    print(f"total time, compilation included: {elapsed:.1f} s")

    # Save the trained network, then load it back into the structure of a
    # freshly initialised one and evaluate what was read from disk.
    checkpoint = args.out / "checkpoint"
    ps.io.save(checkpoint, states, overwrite=True)
    fresh = optimizer.init(model.init(jax.random.key(args.seed + 1), batch_size=args.batch))
    reloaded = ps.io.restore(checkpoint, like=fresh)
    with ps.environ.context(dt=DT):
        reloaded_acc = accuracy(predict, reloaded, x_test, y_test, args.batch, rest)
    print(f"saved to {checkpoint}; the network reloaded from disk: {reloaded_acc:.2%}")
    plot(history, spikes[0], args.out)
    print(f"wrote {args.out / 'training.png'} and {args.out / 'spikes.png'}")
    return final


if __name__ == "__main__":
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    main()
