"""Immutable model descriptions whose state lives in explicit state trees."""

__all__: list[str] = []
