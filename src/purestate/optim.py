"""ps.optim (see API.md)"""

__all__: list[str] = []
