"""`arrow_maps.map_lookup` gives pyarrow's `map_lookup` results on any maps: repeated keys, null maps, slices."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import given, settings
from hypothesis import strategies as st

from spanmeter.arrow_maps import map_lookup

_KEYS = st.sampled_from(["feature", "user_id", "team", ""])
_MAPS = st.lists(
    st.one_of(st.none(), st.lists(st.tuples(_KEYS, st.one_of(st.none(), st.text(max_size=3))), max_size=5)),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(_MAPS, st.integers(0, 5), st.integers(0, 5), _KEYS, st.sampled_from(["first", "last"]))
def test_map_lookup_is_pyarrows(rows, head, tail, key, occurrence) -> None:
    maps = pa.array(rows, pa.map_(pa.string(), pa.string()))
    sliced = maps.slice(min(head, len(maps)), max(0, len(maps) - head - tail))
    for column in (sliced, pa.chunked_array([maps, sliced], maps.type)):
        expected = pc.map_lookup(column, key, occurrence)
        found = map_lookup(column, key, occurrence)
        assert found.to_pylist() == expected.to_pylist()
        assert found.type == pa.string()
