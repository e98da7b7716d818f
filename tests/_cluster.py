"""What the multi-process test workers share: joining the `jax.distributed`
cluster on this host, and dying on purpose (to test that the others notice).

The workers run as scripts from this directory, so they import it as
``_cluster``.
"""

from __future__ import annotations

import argparse
import os
import signal

import jax

DIED_EXIT_CODE = 17  # a worker that died on purpose; the tests check for it


def add_cluster_args(parser: argparse.ArgumentParser) -> None:
    """The options `connect` reads: where the coordinator listens, how many
    processes, which one this is, and how long a silent peer is waited for."""
    parser.add_argument("--coordinator", required=True)
    parser.add_argument("--num-processes", type=int, required=True)
    parser.add_argument("--process-id", type=int, required=True)
    parser.add_argument("--heartbeat-timeout", type=int, default=30)


def connect(args: argparse.Namespace) -> str:
    """Join the cluster described by `args` (coordinator, num_processes,
    process_id, and heartbeat_timeout when the worker has one); returns the
    worker's name for its log."""
    port = args.coordinator.rsplit(":", 1)[1]
    timeouts = {}
    if getattr(args, "heartbeat_timeout", None) is not None:
        timeouts = dict(
            heartbeat_timeout_seconds=args.heartbeat_timeout,
            shutdown_timeout_seconds=args.heartbeat_timeout,
        )
    jax.distributed.initialize(
        args.coordinator,
        num_processes=args.num_processes,
        process_id=args.process_id,
        initialization_timeout=60,
        coordinator_bind_address=f"127.0.0.1:{port}",
        **timeouts,
    )
    name = f"worker {jax.process_index()}/{jax.process_count()}"
    print(f"{name}: local devices {jax.local_devices()}, global {jax.device_count()}", flush=True)
    return name


def die(how: str, message: str) -> None:
    """Exit at once (`how="exit"`) or stop without exiting (`"freeze"`)."""
    print(message, flush=True)
    if how == "freeze":
        os.kill(os.getpid(), signal.SIGSTOP)
    os._exit(DIED_EXIT_CODE)
