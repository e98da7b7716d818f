"""Compilation and control flow over stateful functions."""

__all__: list[str] = []
