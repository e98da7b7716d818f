"""ps.surrogate (see API.md)"""

__all__: list[str] = []
