"""What is left of a vectored read or write after a partial move (a property test)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from revamper.store.vectored import advance


@given(st.lists(st.binary(min_size=0, max_size=40), max_size=8), st.data())
def test_what_is_left_is_exactly_the_bytes_not_moved(
    chunks: list[bytes], data: st.DataObject
) -> None:
    whole = b"".join(chunks)
    moved = data.draw(st.integers(0, len(whole)))
    rest = advance([memoryview(chunk) for chunk in chunks], moved)
    assert b"".join(bytes(view) for view in rest) == whole[moved:]
    assert not rest or rest[0].nbytes > 0  # empty buffers ahead are dropped too
