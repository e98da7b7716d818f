"""ps.random (see API.md)"""

__all__: list[str] = []
