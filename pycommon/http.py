"""The HTTP/1.1 codec shared by pylb and pynode: sans-IO parsers over httptools (llhttp).

`RequestParser.feed(data)` and `ResponseParser.feed(data)` return a list of events
(`RequestHead` / `ResponseHead`, `Body`, `EndOfMessage`) for everything the bytes complete, so
pipelined requests come out in order. Limits follow nginx and raise `HttpError` with nginx's
status: request line over `max_request_line` → 414, one header line over `max_header_line` or
all headers over `max_header_size` → 400, body over `max_body_size` → 413. llhttp is kept
strict (no leniencies), so Content-Length together with Transfer-Encoding, duplicate
Content-Length and bad chunk sizes are parse errors → 400 and the connection is closed.

The encoders build one bytes object per response head so a shell can do one
`transport.write` per head.
"""

from __future__ import annotations

from collections.abc import Iterable
from http import HTTPStatus

import httptools

__all__ = [
    "Body",
    "EndOfMessage",
    "HttpError",
    "Limits",
    "RequestHead",
    "RequestParser",
    "ResponseHead",
    "ResponseParser",
    "Upgrade",
    "encode_chunk",
    "encode_request_head",
    "encode_response_head",
    "reason_phrase",
    "simple_response",
]

Headers = list[tuple[bytes, bytes]]

HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
    b"transfer-encoding", b"upgrade", b"proxy-authenticate", b"proxy-authorization",
})

LAST_CHUNK = b"0\r\n\r\n"


class HttpError(Exception):
    """A request we must answer with `status` and then close the connection."""

    def __init__(self, status: int, detail: str = "") -> None:
        self.status = status
        self.detail = detail or reason_phrase(status)
        # events completed by the same feed() before the error (pipelined requests ahead of
        # a bad one still deserve their answers)
        self.events: list[Event] = []
        super().__init__(f"{status} {self.detail}")


class Limits:
    """nginx-like request limits (defaults: large_client_header_buffers 4 8k, 1m body)."""

    __slots__ = ("max_body_size", "max_header_line", "max_header_size", "max_request_line")

    def __init__(self, max_request_line: int = 8192, max_header_line: int = 8192,
                 max_header_size: int = 32768, max_body_size: int = 1024 * 1024) -> None:
        self.max_request_line = max_request_line
        self.max_header_line = max_header_line
        self.max_header_size = max_header_size
        self.max_body_size = max_body_size  # 0 = unlimited (nginx client_max_body_size 0)


def _get(headers: Headers, name: bytes) -> bytes | None:
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


class RequestHead:
    __slots__ = ("chunked", "content_length", "headers", "keep_alive", "method", "target",
                 "upgrade", "version")

    def __init__(self, method: bytes, target: bytes, version: str, headers: Headers,
                 keep_alive: bool, upgrade: bool, content_length: int | None,
                 chunked: bool) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.keep_alive = keep_alive
        self.upgrade = upgrade
        self.content_length = content_length
        self.chunked = chunked

    def get(self, name: bytes) -> bytes | None:
        """First value of header `name` (give it lower-case)."""
        return _get(self.headers, name)

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)

    def __repr__(self) -> str:
        return f"<RequestHead {self.method.decode()} {self.target!r} HTTP/{self.version}>"


class ResponseHead:
    __slots__ = ("chunked", "content_length", "headers", "keep_alive", "reason", "status",
                 "version")

    def __init__(self, status: int, reason: bytes, version: str, headers: Headers,
                 keep_alive: bool, content_length: int | None, chunked: bool) -> None:
        self.status = status
        self.reason = reason
        self.version = version
        self.headers = headers
        self.keep_alive = keep_alive
        self.content_length = content_length
        self.chunked = chunked

    def get(self, name: bytes) -> bytes | None:
        return _get(self.headers, name)

    def __repr__(self) -> str:
        return f"<ResponseHead {self.status}>"


class Body:
    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class EndOfMessage:
    __slots__ = ()


class Upgrade:
    """The connection switched protocols; `data` is what followed the head in the buffer."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


END = EndOfMessage()
Event = RequestHead | ResponseHead | Body | EndOfMessage | Upgrade


class _Base:
    """Shared header accumulation with nginx-style size accounting.

    `on_header` runs once per header line of every message through pylb and pynode, so it
    does as little as it can: the size checks, and a case-folded name comparison only for
    names as long as `content-length` (14) or `transfer-encoding` (17).
    """

    def __init__(self, limits: Limits | None) -> None:
        self.limits = limits or Limits()
        self._events: list[Event] = []
        self._headers: Headers = []
        self._header_bytes = 0
        self._body_bytes = 0
        self._content_length: int | None = None
        self._chunked = False
        self._hosts = 0  # Host lines of this request

    def on_message_begin(self) -> None:
        self._headers = []
        self._header_bytes = 0
        self._body_bytes = 0
        self._content_length = None
        self._chunked = False

    def on_header(self, name: bytes, value: bytes) -> None:
        lim = self.limits
        ln = len(name)
        n = ln + len(value) + 4
        if n > lim.max_header_line:
            raise HttpError(400, "Request Header Or Cookie Too Large")
        n += self._header_bytes
        if n > lim.max_header_size:
            raise HttpError(400, "Request Header Or Cookie Too Large")
        self._header_bytes = n
        if ln == 14 or ln == 17:
            lname = name.lower()
            if lname == b"content-length":
                if not value.strip().isdigit():
                    raise HttpError(400, "bad Content-Length")
                self._content_length = int(value)
            elif lname == b"transfer-encoding":
                self._chunked = value.strip().lower().endswith(b"chunked")
        elif ln == 4 and name.lower() == b"host":
            self._hosts += 1
        self._headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        self._events.append(Body(body))

    def on_message_complete(self) -> None:
        self._events.append(END)


class RequestParser(_Base):
    """Sans-IO HTTP/1.x request parser; one per client connection."""

    def __init__(self, limits: Limits | None = None) -> None:
        super().__init__(limits)
        self._url = b""
        self._parser = httptools.HttpRequestParser(self)
        self.upgraded = False

    def on_message_begin(self) -> None:
        # _Base.on_message_begin inlined (a super() call per message is measurable)
        self._headers = []
        self._header_bytes = 0
        self._body_bytes = 0
        self._content_length = None
        self._chunked = False
        self._hosts = 0
        self._url = b""

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self.limits.max_request_line:
            raise HttpError(414)

    def on_headers_complete(self) -> None:
        p = self._parser
        cl = self._content_length
        mbs = self.limits.max_body_size
        if mbs and cl is not None and cl > mbs:
            raise HttpError(413)
        version = p.get_http_version()
        if self._hosts != 1 and (self._hosts or version == "1.1"):
            # RFC 9112 3.2, as nginx and Tomcat answer it
            raise HttpError(400, "duplicate Host header" if self._hosts else
                            "HTTP/1.1 request without Host header")
        self._events.append(RequestHead(
            p.get_method(), self._url, version, self._headers,
            p.should_keep_alive(), p.should_upgrade(), cl, self._chunked))

    def on_body(self, body: bytes) -> None:
        mbs = self.limits.max_body_size
        n = self._body_bytes + len(body)
        if mbs and n > mbs:
            raise HttpError(413)
        self._body_bytes = n
        self._events.append(Body(body))

    def feed(self, data: bytes) -> list[Event]:
        """Parse `data`; return the events it completes. Raises HttpError on bad input
        (with `.events` holding what `data` completed before the error)."""
        events: list[Event] = []
        self._events = events
        if self.upgraded:
            return [Upgrade(data)]
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as up:
            self.upgraded = True
            offset = up.args[0] if up.args else len(data)
            events.append(Upgrade(data[offset:]))
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__ or exc.__cause__
            err = cause if isinstance(cause, HttpError) else HttpError(400, str(exc))
            err.events = events
            raise err from None
        except httptools.HttpParserInvalidURLError:
            err = HttpError(400, "invalid request target")
            err.events = events
            raise err from None
        except httptools.HttpParserError as exc:
            cause = exc.__context__
            err = cause if isinstance(cause, HttpError) else \
                HttpError(400, str(exc) or "malformed request")
            err.events = events
            raise err from None
        return events


class ResponseParser(_Base):
    """Sans-IO HTTP/1.x response parser; one per upstream connection.

    Call `expect_head_only()` before feeding the answer to a HEAD request: llhttp cannot be
    told to skip the body, so the parser ends the message at the head and starts a fresh
    llhttp parser for the next response (upstream requests are never pipelined).
    """

    def __init__(self, limits: Limits | None = None) -> None:
        super().__init__(limits or Limits(max_header_size=65536, max_header_line=65536,
                                          max_body_size=0))
        self._reason = b""
        self._in_head = False
        self._parser = httptools.HttpResponseParser(self)
        self._head_only = False
        self._done_head_only = False
        self.close_delimited = False

    def expect_head_only(self) -> None:
        self._head_only = True

    def on_message_begin(self) -> None:
        self._headers = []
        self._header_bytes = 0  # counts every byte fed while the head is incomplete
        self._in_head = True
        self._reason = b""

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        # a member's answer: no per-line accounting here (one call per header of every
        # response); `feed` bounds the bytes of an unfinished head, the names that frame the
        # body are read once at the end of the head
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._in_head = False
        p = self._parser
        status = p.get_status_code()
        cl: int | None = None
        chunked = False
        for name, value in self._headers:
            ln = len(name)
            if ln == 14 or ln == 17:
                lname = name.lower()
                if lname == b"content-length":
                    if not value.strip().isdigit():
                        raise HttpError(502, "bad Content-Length")
                    cl = int(value)
                elif lname == b"transfer-encoding":
                    chunked = value.strip().lower().endswith(b"chunked")
        self._content_length = cl
        self._chunked = chunked
        version = p.get_http_version()
        keep = p.should_keep_alive()
        if self._head_only and not keep and not chunked and cl is None and status >= 200:
            # llhttp takes a head without a length for a body read to EOF; the answer to a
            # HEAD has no body, so only its Connection header decides
            toks = {t.strip().lower() for k, v in self._headers
                    if k.lower() == b"connection" for t in v.split(b",")}
            keep = b"close" not in toks if version == "1.1" else b"keep-alive" in toks
        head = ResponseHead(status, self._reason, version, self._headers, keep, cl, chunked)
        self._events.append(head)
        no_body = status < 200 or status in (204, 304)
        self.close_delimited = (not no_body and not self._head_only and
                                self._content_length is None and not self._chunked)
        if self._head_only and status >= 200:
            self._events.append(END)
            self._done_head_only = True

    def on_message_complete(self) -> None:
        if self._done_head_only:
            return
        super().on_message_complete()

    def feed(self, data: bytes) -> list[Event]:
        self._events = []
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as up:
            offset = up.args[0] if up.args else len(data)
            self._events.append(Upgrade(data[offset:]))
        except httptools.HttpParserError as exc:
            raise HttpError(502, f"invalid response from upstream: {exc}") from None
        if self._in_head:
            self._header_bytes += len(data)
            if self._header_bytes > self.limits.max_header_size:
                raise HttpError(502, "response head too large")
        if self._done_head_only:
            self._head_only = False
            self._done_head_only = False
            self._parser = httptools.HttpResponseParser(self)
        return self._events

    def feed_eof(self) -> list[Event]:
        """The upstream closed: ends a close-delimited body, otherwise it is truncation."""
        if self.close_delimited:
            self.close_delimited = False
            return [END]
        return []


_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
_REASONS[413] = b"Request Entity Too Large"  # nginx's wording
_REASONS[414] = b"Request-URI Too Large"


def reason_phrase(status: int) -> str:
    return _REASONS.get(status, b"Unknown").decode()


def encode_response_head(status: int, headers: Iterable[tuple[bytes, bytes]],
                         reason: bytes | None = None, version: bytes = b"HTTP/1.1") -> bytes:
    parts = [version, b" %d " % status, reason or _REASONS.get(status, b"Unknown"), b"\r\n"]
    for k, v in headers:
        parts += (k, b": ", v, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def encode_request_head(method: bytes, target: bytes,
                        headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    parts = [method, b" ", target, b" HTTP/1.1\r\n"]
    for k, v in headers:
        parts += (k, b": ", v, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def encode_chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data) if data else b""


def simple_response(status: int, body: bytes = b"", content_type: bytes = b"text/html",
                    headers: Iterable[tuple[bytes, bytes]] = (), keep_alive: bool = True,
                    head_only: bool = False) -> bytes:
    """A whole response with Content-Length, for error pages and small answers."""
    hs: Headers = [(b"Content-Type", content_type), (b"Content-Length", b"%d" % len(body))]
    hs.extend(headers)
    if not keep_alive:
        hs.append((b"Connection", b"close"))
    head = encode_response_head(status, hs)
    return head if head_only else head + body


def error_page(status: int) -> bytes:
    """nginx-like default error body."""
    text = f"{status} {reason_phrase(status)}".encode()
    return (b"<html>\r\n<head><title>" + text + b"</title></head>\r\n<body>\r\n<center><h1>" +
            text + b"</h1></center>\r\n<hr><center>pylb</center>\r\n</body>\r\n</html>\r\n")
