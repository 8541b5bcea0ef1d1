from collections.abc import Sequence

Columns = tuple[tuple[bytes, bytes], ...]

def flatten(
    bodies: Sequence[bytes | memoryview],
    first: int,
    markers: tuple[bytes, ...],
    columns: Columns,
    path: str,
    resource_columns: Columns,
    resources_path: str,
) -> int: ...
