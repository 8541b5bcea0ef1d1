from collections.abc import Sequence

Columns = tuple[tuple[bytes, bytes], ...]

def flatten(
    bodies: Sequence[bytes | memoryview],
    first: int,
    scopes: tuple[bytes, ...],
    scope_masks: tuple[int, ...],
    resource_keys: tuple[bytes, ...],
    most: int,
    limit: int,
    known: tuple[bytes, ...],
    known_kinds: bytes,
    known_masks: tuple[int, ...],
    content_prefixes: tuple[bytes, ...],
    columns: Columns,
    path: str,
) -> tuple[int, int]: ...
