from collections.abc import Sequence

Columns = tuple[tuple[bytes, bytes], ...]

def flatten(
    bodies: Sequence[bytes | memoryview],
    first: int,
    markers: tuple[bytes, ...],
    resource_keys: tuple[bytes, ...],
    most: int,
    limit: int,
    columns: Columns,
    path: str,
) -> int: ...
