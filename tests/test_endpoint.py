"""engine.endpoint's pure helpers, without a database or a server."""

from __future__ import annotations

import pytest
from starlette.datastructures import Headers, QueryParams

from engine.endpoint import IndexedHeaders, query_of

QUERIES = [
    b"",
    b"a=1",
    b"tenant_id=3&limit=50",
    b"a=1&a=2&b=",
    b"a&b=&=c&&d==e",
    b"&&",
    b"x=%C3%A9t%C3%A9&y=a+b",  # decoded by Starlette's own parser
    b"name=caf\xe9",  # not UTF-8: latin-1, as Starlette
    b"after=AVx3-_.~&kind=login",
    b"q=a;b=c",
]


@pytest.mark.parametrize("raw", QUERIES)
def test_query_of_reads_a_query_string_exactly_as_starlette(raw: bytes) -> None:
    ours, theirs = query_of(raw), QueryParams(raw)
    assert ours.multi_items() == theirs.multi_items()
    assert dict(ours) == dict(theirs)
    for name in theirs:
        assert ours.getlist(name) == theirs.getlist(name)
        assert ours[name] == theirs[name]
    assert str(ours) == str(theirs)


RAW_HEADERS = [
    (b"host", b"t"),
    (b"x-request-id", b"first"),
    (b"x-request-id", b"second"),
    (b"authorization", b"Bearer abc"),
    (b"x-name", b"caf\xe9"),
    (b"empty", b""),
]


@pytest.mark.parametrize(
    "name", ["host", "X-Request-ID", "authorization", "x-name", "empty", "absent", "EMPTY"]
)
def test_indexed_headers_read_as_starlette_headers(name: str) -> None:
    ours = IndexedHeaders(scope={"headers": list(RAW_HEADERS)})
    theirs = Headers(scope={"headers": list(RAW_HEADERS)})
    assert ours.get(name) == theirs.get(name)
    assert ours.get(name, "d") == theirs.get(name, "d")
    assert (name in ours) == (name in theirs)
    assert ours.getlist(name) == theirs.getlist(name)
    if name in theirs:
        assert ours[name] == theirs[name]
    else:
        with pytest.raises(KeyError):
            ours[name]


def test_a_name_asked_again_in_another_case_reads_the_same_header() -> None:
    for _ in range(2):  # the second round takes each name's bytes from the module's dict
        for name in ("X-Request-ID", "x-request-id", "X-REQUEST-ID", "Absent-Name"):
            ours = IndexedHeaders(scope={"headers": list(RAW_HEADERS)})
            assert ours.get(name) == Headers(scope={"headers": list(RAW_HEADERS)}).get(name)
