"""Error types raised by purestate.

Every message names the state paths involved and says what to do about it.
"""

from __future__ import annotations

__all__ = ["StateError", "BatchAxisError", "StateTypeError", "StateKeyError"]


class StateError(ValueError):
    """A problem with a state tree, a path or a selector.

    Examples:
        >>> import purestate as ps
        >>> try:
        ...     ps.merge({"a": ps.State(1.0)}, {"a": ps.State(2.0)})
        ... except ps.StateError as e:
        ...     print("a" in str(e))
        True
    """


class BatchAxisError(ValueError):
    """A state is batched where it was not declared batched (or the reverse).

    Examples:
        >>> import purestate as ps
        >>> issubclass(ps.BatchAxisError, ValueError)
        True
    """


class StateTypeError(StateError, TypeError):
    """A value of the wrong type where purestate expects a `State`, a `str`
    key or a selector. It is both a `TypeError` (the usual type for it) and a
    `StateError`, so either `except` clause catches it."""


class StateKeyError(StateError, KeyError):
    """An unknown path. It is both a `KeyError` (as for a missing dict key) and a
    `StateError`."""

    def __str__(self) -> str:
        # KeyError.__str__ shows repr(message); messages here are prose.
        return str(self.args[0]) if self.args else ""
