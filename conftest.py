"""Test configuration shared by tests/, property_tests/, docs and doctests.

Four host CPU devices are forced before JAX is first imported, so pmap and
sharding tests run on any machine. Hypothesis profiles: ``ci`` (fast, chosen
when CI is set), ``dev`` (default) and ``deep`` (HYPOTHESIS_PROFILE=deep).
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

from hypothesis import HealthCheck, settings

_common = dict(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile("ci", max_examples=12, derandomize=True, **_common)
settings.register_profile("dev", max_examples=30, **_common)
settings.register_profile("deep", max_examples=300, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))
