from typing import Any

import numpy.typing as npt

def admit(
    seen: npt.NDArray[Any],
    seen_starts: npt.NDArray[Any],
    seen_ends: npt.NDArray[Any],
    keys: npt.NDArray[Any],
    holds: npt.NDArray[Any],
    lookups: npt.NDArray[Any],
    looks: npt.NDArray[Any],
    starts: npt.NDArray[Any],
    ends: npt.NDArray[Any],
    kept: npt.NDArray[Any],
    out_keys: npt.NDArray[Any],
    out_starts: npt.NDArray[Any],
    out_ends: npt.NDArray[Any],
    replaced: npt.NDArray[Any],
    table: npt.NDArray[Any],
) -> int: ...
