import threading

import brainunit as u
import pytest

import purestate as ps


def test_inner_context_wins_and_outer_keys_stay_visible():
    with ps.environ.context(dt=1, tau=5):
        with ps.environ.context(dt=2):
            assert ps.environ.get("dt") == 2
            assert ps.environ.get("tau") == 5
        assert ps.environ.get("dt") == 1


def test_unset_key_error_says_how_to_set_it():
    with ps.environ.context(tau=5), pytest.raises(KeyError, match=r"context\(dt=") as info:
        ps.environ.get("dt")
    assert "tau" in str(info.value)


def test_cache_key_is_hashable_and_tells_quantities_apart():
    with ps.environ.context(dt=0.1 * u.ms):
        k1 = ps.environ.cache_key()
        hash(k1)
    with ps.environ.context(dt=0.2 * u.ms):
        k2 = ps.environ.cache_key()
    with ps.environ.context(dt=0.1 * u.second):
        k3 = ps.environ.cache_key()
    assert len({k1, k2, k3}) == 3


def test_each_thread_sees_only_its_own_context():
    barrier = threading.Barrier(2)
    seen = {}

    def worker(value):
        with ps.environ.context(dt=value):
            barrier.wait()  # both contexts are open at once
            seen[value] = ps.environ.get("dt")

    threads = [threading.Thread(target=worker, args=(v,)) for v in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {1: 1, 2: 2}
