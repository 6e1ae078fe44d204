"""The shared HTTP/1.1 codec: events, pipelining, nginx's limits and smuggling refusals."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pycommon.http import (
    Body,
    EndOfMessage,
    HttpError,
    Limits,
    RequestHead,
    RequestParser,
    ResponseHead,
    ResponseParser,
    Upgrade,
    encode_chunk,
    encode_response_head,
    simple_response,
)


def kinds(events: Sequence[object]) -> list[str]:
    return [type(e).__name__ for e in events]


def test_pipelined_requests_come_out_in_order() -> None:
    p = RequestParser()
    ev = p.feed(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
                b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
                b"GET /c HTTP/1.1\r\nHost: x\r\n\r\n")
    heads = [e for e in ev if isinstance(e, RequestHead)]
    assert [h.target for h in heads] == [b"/a", b"/b", b"/c"]
    assert kinds(ev) == ["RequestHead", "EndOfMessage", "RequestHead", "Body", "EndOfMessage",
                         "RequestHead", "EndOfMessage"]
    assert heads[1].content_length == 3 and heads[1].get(b"host") == b"x"


def test_bytes_split_anywhere_give_the_same_events() -> None:
    raw = (b"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    for cut in range(1, len(raw)):
        p = RequestParser()
        ev = p.feed(raw[:cut]) + p.feed(raw[cut:])
        body = b"".join(e.data for e in ev if isinstance(e, Body))
        assert body == b"abcde"
        assert isinstance(ev[-1], EndOfMessage)


@pytest.mark.parametrize("raw,status", [
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"a" * 4000) for i in range(9))
     + b"\r\n", 400),
    (b"POST / HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n", 413),
    (b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabc", 400),
    (b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    (b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
    (b"GARBAGE\r\n\r\n", 400),
    # RFC 9112 3.2 (nginx, Tomcat): HTTP/1.1 needs exactly one Host line
    (b"GET / HTTP/1.1\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", 400),
    (b"GET / HTTP/1.0\r\nHost: a\r\nHOST: a\r\n\r\n", 400),
])
def test_bad_requests_get_nginx_codes(raw: bytes, status: int) -> None:
    with pytest.raises(HttpError) as exc:
        RequestParser().feed(raw)
    assert exc.value.status == status


def test_chunked_body_over_limit_is_413() -> None:
    p = RequestParser(Limits(max_body_size=10))
    p.feed(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
    with pytest.raises(HttpError) as exc:
        p.feed(b"b\r\n" + b"x" * 11 + b"\r\n")
    assert exc.value.status == 413


def test_upgrade_hands_over_the_rest() -> None:
    ev = RequestParser().feed(b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
                              b"Connection: Upgrade\r\n\r\nFRAME")
    assert isinstance(ev[0], RequestHead) and ev[0].upgrade
    up = ev[-1]
    assert isinstance(up, Upgrade) and up.data == b"FRAME"


def test_response_parser_head_only_then_next_response() -> None:
    r = ResponseParser()
    r.expect_head_only()
    ev = r.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
    assert kinds(ev) == ["ResponseHead", "EndOfMessage"]
    ev = r.feed(b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno")
    assert isinstance(ev[0], ResponseHead) and ev[0].status == 404
    assert kinds(ev) == ["ResponseHead", "Body", "EndOfMessage"]


def test_close_delimited_response_ends_at_eof() -> None:
    r = ResponseParser()
    ev = r.feed(b"HTTP/1.1 200 OK\r\n\r\nsome")
    assert kinds(ev) == ["ResponseHead", "Body"]
    assert kinds(r.feed_eof()) == ["EndOfMessage"]


def test_encoders_round_trip_through_the_parser() -> None:
    head = encode_response_head(201, [(b"X-A", b"1"), (b"Transfer-Encoding", b"chunked")])
    raw = head + encode_chunk(b"hello") + encode_chunk(b"") + b"0\r\n\r\n"
    ev = ResponseParser().feed(raw)
    assert isinstance(ev[0], ResponseHead) and ev[0].status == 201
    assert b"".join(e.data for e in ev if isinstance(e, Body)) == b"hello"
    whole = simple_response(404, b"nope", keep_alive=False)
    assert whole.startswith(b"HTTP/1.1 404 Not Found\r\n") and b"Connection: close" in whole


@given(st.binary(max_size=300))
def test_garbage_never_crashes_the_parser(data: bytes) -> None:
    p = RequestParser()
    try:
        p.feed(data)
    except HttpError as exc:
        assert 400 <= exc.status < 500


def test_response_head_is_bounded_and_framing_headers_read_at_its_end() -> None:
    r = ResponseParser(Limits(max_header_size=1024, max_header_line=1024, max_body_size=0))
    r.feed(b"HTTP/1.1 200 OK\r\n")
    with pytest.raises(HttpError) as err:
        for _ in range(40):  # a member that never ends its head
            r.feed(b"X-Filler: " + b"a" * 40 + b"\r\n")
    assert err.value.status == 502
    ev = ResponseParser().feed(b"HTTP/1.1 200 OK\r\ncontent-LENGTH: 3\r\n"
                               b"X-Transfer-Encodings: chunked\r\n\r\nabc")
    head = ev[0]
    assert isinstance(head, ResponseHead) and head.content_length == 3 and not head.chunked
    assert kinds(ev) == ["ResponseHead", "Body", "EndOfMessage"]
    ev = ResponseParser().feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                               b"3\r\nabc\r\n0\r\n\r\n")
    assert isinstance(ev[0], ResponseHead) and ev[0].chunked and ev[0].content_length is None


def test_host_is_optional_in_http10_and_one_is_enough() -> None:
    ev = RequestParser().feed(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
                              b"GET / HTTP/1.1\r\nHoSt: a\r\n\r\n")
    heads = [e for e in ev if isinstance(e, RequestHead)]
    assert [h.version for h in heads] == ["1.0", "1.1"]


def test_head_answer_without_length_keeps_the_member_connection() -> None:
    for raw, keep in ((b"HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\n", True),
                      (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", False),
                      (b"HTTP/1.0 200 OK\r\n\r\n", False),
                      (b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\n\r\n", True)):
        r = ResponseParser()
        r.expect_head_only()
        ev = r.feed(raw)
        assert kinds(ev) == ["ResponseHead", "EndOfMessage"]
        assert isinstance(ev[0], ResponseHead) and ev[0].keep_alive is keep, raw
