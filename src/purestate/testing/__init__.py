"""Hypothesis strategies and checks for property-testing code over state trees.

Examples:
    >>> import purestate as ps
    >>> from hypothesis import given
    >>> @given(ps.testing.state_trees())
    ... def test_roundtrip(tree):
    ...     assert ps.flatten(ps.unflatten(ps.flatten(tree))) == ps.flatten(tree)
    >>> test_roundtrip()
"""

from ._assertions import assert_trees_allclose
from ._strategies import selectors, state_trees, subtrees

__all__ = ["assert_trees_allclose", "selectors", "state_trees", "subtrees"]
