"""Transforms that augment a stateful function: differentiation, batching, devices.

Every transform takes and returns stateful functions
``f(states, *args) -> (out, new_states)``.
"""

__all__: list[str] = []
