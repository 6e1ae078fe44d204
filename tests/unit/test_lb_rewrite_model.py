"""pylb's data path pinned byte for byte against a reference model written here.

Why: the hot path that turns a client request into the member's request (`Proxy.request_bytes`
and its general path `_request_bytes_listed`) and the member's response head into the client's
(`Exchange.on_head` / `_head_general`), and the codec under both, are being rewritten for
speed. This file drives the real `ClientConnection` / `UpstreamConnection` in-process (fake
transports, no sockets) with generated configs (set_headers, sticky, body limit) and
conversations of 1-3 requests on one client connection, each answered by the member, the bytes
of either side sometimes split over several reads. It compares every byte each side receives
with what the small, slow, obviously-ordered model below says nginx-style rewriting must produce
(docs/pylb.md "Proxying", DESIGN.md "Limits and codes"): hop-by-hop and Connection-listed
headers out, set_headers in, X-Forwarded-For merged, sticky cookie stripped / inserted,
Content-Length for buffered bodies (re-chunked streaming for big chunked ones without a limit),
Upgrade and the 101 tunnel, 100 Continue, re-chunking and `Connection: close` towards the
client. Any change that alters a single byte, which member is used, the documented write counts
(one member write per buffered request, one client write per member read) or who closes which
connection fails here. Chunk boundaries are pinned too: one chunk per body piece the parser
hands over per read.

The model encodes the current behaviour, which follows nginx 1.22.1 (checked on this box,
and side by side in tests/integration/test_lb_interop_headers.py) for `$host` (lower-cased,
port and trailing dot dropped, an absolute-form target's host first; the target goes on as its
path), variables inside set_headers values, empty values not sent, Upgrade/Connection set by
config replaced by the proxy's own on upgrade requests (a configured Content-Length is a config
error), `Connection: keep-alive` told to keep-alive HTTP/1.0 clients, `Connection: close` on
a refused upgrade, and HEAD answers without a length keeping the member connection. HTTP/1.1
requests carry exactly one Host (the codec answers 400 otherwise, as nginx does). Where it
still differs from nginx it is marked `QUIRK n` below:

1. `$host` falls back to "localhost" for an HTTP/1.0 request without Host (nginx: the
   server_name, empty by default, and then no Host line; pylb always speaks HTTP/1.1 to
   members, where Host is required).
2. Every `$host` line goes first (right after the request line); every other set header goes
   after the client's headers, then the merged X-Forwarded-For, Upgrade/Connection and
   Content-Length. nginx puts all proxy_set_header lines before the client's headers.
3. Only the FIRST Connection header's tokens remove other headers (nginx removes none, and
   passes Proxy-Connection and Trailer on too; RFC 9110 says all Connection headers count).
   X-Forwarded-For named in Connection is still merged into X-Forwarded-For.
7. With `indirect`, a configured `$http_cookie` copies the unstripped cookie to the member
   (the Cookie header itself loses only the inserted cookie, as with HAProxy).
10. A member's 101 head is relayed verbatim (its Keep-Alive or other hop-by-hop headers too),
   without the sticky Set-Cookie.
12. Keep-alive and upgrade are llhttp's verdicts: Proxy-Connection counts like Connection
   (`Proxy-Connection: close` closes a 1.1 client; nginx ignores that header), and a 1.0
   request listing both `keep-alive` and `close` is kept alive.

Not generated (so not pinned): bodies on Upgrade requests (llhttp hands such a body to the
tunnel, so the member gets `Content-Length: 0` and the bytes only after a 101), pipelining,
retries, error answers, trailers in chunked bodies.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pycommon.config import TomlSource
from pylb import config as lbconfig
from pylb.proxy import ClientConnection, Proxy
from pylb.upstream import UpstreamConnection, UpstreamGroup

Headers = list[tuple[bytes, bytes]]

# -- the reference model's own constants (deliberately not imported from the code) ----------
HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
                 b"transfer-encoding", b"upgrade", b"proxy-authenticate",
                 b"proxy-authorization"})
REASONS = {101: b"Switching Protocols", 200: b"OK", 201: b"Created", 204: b"No Content",
           301: b"Moved Permanently", 304: b"Not Modified", 404: b"Not Found",
           500: b"Internal Server Error"}
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
STREAM_MIN = 64 * 1024  # docs/pylb.md: Content-Length bodies from 64 KiB on are streamed

# -- configs --------------------------------------------------------------------------------
# set_headers tables; None = the key left out (the seeds' nginx defaults)
SET_HEADERS: list[dict[str, str] | None] = [
    None,
    {},
    {"X-Forwarded-For": "$proxy_add_x_forwarded_for", "Host": "$host",
     "X-Real-IP": "$remote_addr"},
    {"Host": "$host", "X-Forwarded-Host": "$host", "X-Forwarded-Proto": "$scheme",
     "X-UA": "$http_user_agent", "X-Lit": "lit", "X-Empty": "", "X-Cookie": "$http_cookie"},
    {"X-Custom-A": "$http_x_custom_a", "x-custom-b": "override", "User-Agent": "",
     "X-Missing": "$http_x_not_sent"},
    {"Connection": "y", "TE": "trailers", "X-Forwarded-For": "$remote_addr", "Expect": "e",
     "Host": "lit", "Cookie": "c"},
    {"cookie": "$http_cookie", "Keep-Alive": "", "X-Forwarded-For": "",
     "Proxy-Connection": "$http_connection", "X-Up": "$http_upgrade"},
    # nginx's WebSocket recipe written as set headers
    {"Host": "$host", "Upgrade": "$http_upgrade", "Connection": "upgrade"},
    # variables inside values (nginx interpolates them); an all-empty value is not sent
    {"X-Scheme": "$scheme://x", "X-Mixed": "a $remote_addr b", "X-Real-IP": "$remote_addr",
     "X-Both": "${host}|$http_x_custom_a", "X-Maybe": "$http_x_custom_a$http_x_not_sent",
     "X-Uri": "$request_uri"},
]
# [upstream.app.sticky] tables; None = no sticky layer
STICKY: list[dict[str, Any] | None] = [
    None,
    {"cookie": "JSESSIONID", "insert": "ROUTEID", "prefix": ".", "indirect": True,
     "httponly": True, "samesite": "Lax"},
    {"cookie": "JSESSIONID", "insert": "SERVERID", "prefix": "", "indirect": True,
     "nocache": True, "httponly": False, "secure": True, "max_age": 60},
    {"cookie": "JSESSIONID", "insert": "ROUTEID", "prefix": ".", "indirect": False},
    {"cookie": "JSESSIONID"},
]
# m0 is routed by its name, m1 by its route r1; distinct addresses (pools go by address)
MEMBERS = [("m0", None), ("m1", "r1")]
PORTS = {"m0": 1, "m1": 2}


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    return '"' + str(v) + '"'


def config_text(set_index: int, sticky_index: int, unlimited: bool) -> str:
    sets = SET_HEADERS[set_index]
    text = '[server]\nlisten = ["127.0.0.1:0"]\nupstream = "app"\n'
    if unlimited:
        text += 'client_max_body_size = "0"\n'
    if sets is not None:
        text += "set_headers = {" + ", ".join(
            f'"{k}" = {_toml_value(v)}' for k, v in sets.items()) + "}\n"
    text += '[upstream.app]\nmembers = [\n'
    for name, route in MEMBERS:
        r = f', route = "{route}"' if route else ""
        text += f'  {{ name = "{name}", address = "127.0.0.1:{PORTS[name]}"{r} }},\n'
    text += "]\n"
    sticky = STICKY[sticky_index]
    if sticky is not None:
        text += "[upstream.app.sticky]\n" + "".join(
            f"{k} = {_toml_value(v)}\n" for k, v in sticky.items())
    return text


_CONFIGS: dict[tuple[int, int, bool], lbconfig.LbConfig] = {}


def load_config(set_index: int, sticky_index: int, unlimited: bool) -> lbconfig.LbConfig:
    key = (set_index, sticky_index, unlimited)
    if key not in _CONFIGS:
        _CONFIGS[key] = lbconfig.from_source(TomlSource.parse(config_text(*key), "<model>"))
    return _CONFIGS[key]


# -- scenario -------------------------------------------------------------------------------
@dataclass
class Scenario:
    set_index: int
    sticky_index: int
    peer: tuple[str, int]
    method: bytes
    target: bytes
    version: bytes  # b"1.0" / b"1.1"
    headers: Headers  # as sent, framing header included
    body_kind: str  # none / length / chunked / stream
    chunks: list[bytes]  # the body as the client sends it (one item unless chunked)
    # the member's answer
    interim: bool  # a 100 Continue before the final head
    status: int
    reason: bytes
    rversion: bytes
    rheaders: Headers  # as sent, framing header included
    framing: str  # length / chunked / close
    rchunks: list[bytes]
    tunnel_data: bytes = b""  # bytes after a 101 head
    req_cuts: list[int] = field(default_factory=list)  # the request arrives in pieces
    unlimited: bool = False  # client_max_body_size = 0
    resp_cuts: list[int] = field(default_factory=list)  # so does the answer

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    def wire_request(self) -> bytes:
        return b"".join(seg for seg, _ in self.request_segments())

    def request_segments(self) -> list[tuple[bytes, bool]]:
        """The client's request as (bytes, is body data) segments."""
        head = [self.method, b" ", self.target, b" HTTP/", self.version, b"\r\n"]
        for k, v in self.headers:
            head += (k, b": ", v, b"\r\n")
        head.append(b"\r\n")
        out = [(b"".join(head), False)]
        if self.body_kind == "chunked":
            for c in self.chunks:
                out += [(b"%x\r\n" % len(c), False), (c, True), (b"\r\n", False)]
            out.append((b"0\r\n\r\n", False))
        else:
            out.append((self.body, True))
        return out

    def body_per_read(self) -> list[bytes]:
        """The request body bytes each read of the client's socket carries."""
        bounds = [0, *self.req_cuts, len(self.wire_request())]
        out = [b""] * (len(bounds) - 1)
        pos = 0
        for seg, is_body in self.request_segments():
            if is_body:
                for read, (a, b) in enumerate(itertools.pairwise(bounds)):
                    lo, hi = max(a, pos), min(b, pos + len(seg))
                    if hi > lo:
                        out[read] += seg[lo - pos:hi - pos]
            pos += len(seg)
        return out

    def wire_response(self) -> bytes:
        return b"".join(seg for seg, _ in self.response_segments())

    def response_segments(self) -> list[tuple[bytes, bool]]:
        """The member's answer as (bytes, is body data) segments."""
        out = [(CONTINUE, False)] if self.interim else []
        head = [b"HTTP/", self.rversion, b" %d " % self.status, self.reason, b"\r\n"]
        for k, v in self.rheaders:
            head += (k, b": ", v, b"\r\n")
        head.append(b"\r\n")
        out.append((b"".join(head), False))
        if self.status == 101:
            out.append((self.tunnel_data, False))
        elif self.sends_body:
            if self.framing == "chunked":
                for c in self.rchunks:
                    out += [(b"%x\r\n" % len(c), False), (c, True), (b"\r\n", False)]
                out.append((b"0\r\n\r\n", False))
            else:
                out.append((b"".join(self.rchunks), True))
        return out

    def body_events(self) -> list[bytes]:
        """The body as the parser hands it over: one piece per body segment per read."""
        events: list[bytes] = []
        pos = 0
        for seg, is_body in self.response_segments():
            if is_body:
                cuts = [c - pos for c in self.resp_cuts if pos < c < pos + len(seg)]
                bounds = [0, *cuts, len(seg)]
                events += [seg[a:b] for a, b in itertools.pairwise(bounds)
                           if b > a]
            pos += len(seg)
        return events

    @property
    def sends_body(self) -> bool:
        return self.method != b"HEAD" and self.status not in (204, 304) and self.status >= 200


def cased(draw: st.DrawFn, name: bytes) -> bytes:
    how = draw(st.sampled_from(["as is", "lower", "upper", "mixed"]))
    if how == "lower":
        return name.lower()
    if how == "upper":
        return name.upper()
    if how == "mixed":
        mask = draw(st.integers(0, 2 ** len(name) - 1))
        return bytes(c ^ 0x20 if (mask >> i) & 1 and chr(c).isalpha() else c
                     for i, c in enumerate(name))
    return name


CONN_TOKENS = [b"keep-alive", b"close", b"upgrade", b"Keep-Alive", b"Upgrade", b"x-custom-a",
               b"X-Custom-B", b"cookie", b"user-agent", b"TE", b"x-forwarded-for", b"host",
               b"X-Real-IP", b"foo"]
COOKIE_PARTS = [b"a=1", b"ROUTEID=.m0", b"ROUTEID=.r1", b"ROUTEID=.zz", b"ROUTEID=m0",
                b"SERVERID=m0", b"SERVERID=r1", b"SERVERID=.r1", b"JSESSIONID=ABC.m0",
                b"JSESSIONID=ABC.r1", b"JSESSIONID=ABC.m1", b"JSESSIONID=ABC", b"b=2",
                b"c", b'ROUTEID=".r1"']


@st.composite
def conn_value(draw: st.DrawFn) -> bytes:
    toks = draw(st.lists(st.sampled_from(CONN_TOKENS), max_size=3))
    sep = draw(st.sampled_from([b", ", b",", b" , "]))
    return sep.join(toks)


@st.composite
def cookie_header(draw: st.DrawFn) -> bytes:
    parts = draw(st.lists(st.sampled_from(COOKIE_PARTS), min_size=1, max_size=4))
    sep = draw(st.sampled_from([b"; ", b";", b" ;  "]))
    tail = draw(st.sampled_from([b"", b";"]))
    return sep.join(parts) + tail


REQUEST_HEADERS: dict[bytes, st.SearchStrategy[bytes]] = {
    b"Connection": conn_value(),
    b"Keep-Alive": st.just(b"timeout=5"),
    b"Proxy-Connection": st.sampled_from([b"keep-alive", b"close"]),
    b"TE": st.just(b"trailers"),
    b"Trailer": st.just(b"X-T"),
    b"Upgrade": st.sampled_from([b"websocket", b"h2c"]),
    b"X-Forwarded-For": st.sampled_from([b"1.2.3.4", b"10.0.0.1, 10.0.0.2", b""]),
    b"X-Real-IP": st.just(b"9.9.9.9"),
    b"Cookie": cookie_header(),
    b"Expect": st.sampled_from([b"100-continue", b"100-Continue", b"foo"]),
    b"User-Agent": st.sampled_from([b"curl/8.0", b"Mozilla/5.0 (X11; Linux)"]),
    b"X-Custom-A": st.sampled_from([b"v", b"", b"a, b"]),
    b"X-Custom-B": st.sampled_from([b"w", b"1"]),
    b"X-Other": st.just(b"o"),
    b"Proxy-Authorization": st.just(b"Basic eDp5"),
    b"Accept": st.just(b"*/*"),
}
HOSTS = st.sampled_from([b"example.com", b"Example.COM:8080", b"a.b", b"", b"[::1]:81",
                         b"dot.example."])
RESPONSE_HEADERS: dict[bytes, st.SearchStrategy[bytes]] = {
    b"Server": st.just(b"pynode"),
    b"Date": st.just(b"Sun, 22 Nov 2026 03:00:00 GMT"),
    b"Content-Type": st.just(b"text/plain"),
    b"Set-Cookie": st.sampled_from([b"JSESSIONID=ABC.m0; Path=/; HttpOnly", b"x=1"]),
    b"Connection": st.sampled_from([b"keep-alive", b"close", b"Keep-Alive", b"close, X-A",
                                    b"X-A, x-b", b"upgrade", b"x-a", b""]),
    b"Keep-Alive": st.just(b"timeout=5"),
    b"X-A": st.sampled_from([b"a", b""]),
    b"X-B": st.just(b"b"),
    b"Cache-Control": st.just(b"no-store"),
    b"Location": st.just(b"/elsewhere"),
    b"Proxy-Authenticate": st.just(b"Basic"),
    b"Trailer": st.just(b"X-T"),
}


def tokens(value: bytes) -> set[bytes]:
    return {t.strip().lower() for t in value.split(b",")}


def all_tokens(headers: Headers, names: tuple[bytes, ...]) -> set[bytes]:
    out: set[bytes] = set()
    for k, v in headers:
        if k.lower() in names:
            out |= tokens(v)
    return out


def first(headers: Headers, name: bytes) -> bytes | None:
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


def is_upgrade(s: Scenario) -> bool:
    """QUIRK 12, llhttp: an Upgrade header and the `upgrade` token in Connection or
    Proxy-Connection."""
    return first(s.headers, b"upgrade") is not None and \
        b"upgrade" in all_tokens(s.headers, (b"connection", b"proxy-connection"))


def request_keep_alive(s: Scenario) -> bool:
    """QUIRK 12, llhttp: tokens of every Connection and Proxy-Connection header; 1.1
    persists unless `close`, 1.0 only with `keep-alive` (which then wins over `close`)."""
    toks = all_tokens(s.headers, (b"connection", b"proxy-connection"))
    if s.version == b"1.1":
        return b"close" not in toks
    return b"keep-alive" in toks


@st.composite
def conversations(draw: st.DrawFn) -> list[Scenario]:
    """1-3 requests one after the other on one client connection (one config, one peer)."""
    set_index = draw(st.integers(0, len(SET_HEADERS) - 1))
    sticky_index = draw(st.integers(0, len(STICKY) - 1))
    peer = draw(st.sampled_from([("10.1.2.3", 40000), ("::1", 40001), ("127.0.0.1", 5)]))
    unlimited = draw(st.booleans())
    n = draw(st.sampled_from([1, 1, 2, 3, 3]))
    conv = [scenario(draw, set_index, sticky_index, peer) for _ in range(n)]
    for s in conv:
        s.unlimited = unlimited
    return conv


def scenario(draw: st.DrawFn, set_index: int, sticky_index: int,
             peer: tuple[str, int]) -> Scenario:
    method = draw(st.sampled_from([b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS",
                                   b"PATCH"]))
    target = draw(st.sampled_from([b"/", b"/x?y=1", b"/a/b;jsessionid=ABC.r1?q",
                                   b"/a;jsessionid=XYZ.m0", b"/%7Euser/",
                                   b"http://example.org/abs?x"]))
    version = draw(st.sampled_from([b"1.1", b"1.0"]))
    names = draw(st.lists(st.sampled_from(list(REQUEST_HEADERS)), max_size=10))
    if version == b"1.1" or draw(st.booleans()):  # exactly one Host; optional in 1.0
        names.insert(draw(st.integers(0, len(names))), b"Host")
    headers: Headers = []
    xff = 0
    for n in names:
        if n == b"X-Forwarded-For":
            xff += 1
            if xff > 2:
                continue
        headers.append((cased(draw, n), draw(HOSTS if n == b"Host" else REQUEST_HEADERS[n])))
    if draw(st.integers(0, 4)) == 0:  # a WebSocket-style upgrade (rare by chance alone)
        for h in ((cased(draw, b"Upgrade"), draw(REQUEST_HEADERS[b"Upgrade"])),
                  (cased(draw, b"Connection"), draw(st.sampled_from(
                      [b"Upgrade", b"keep-alive, Upgrade", b"upgrade, X-Custom-A",
                       b"close, upgrade"])))):
            headers.insert(draw(st.integers(0, len(headers))), h)
    s = Scenario(set_index, sticky_index, peer, method, target, version, headers, "none", [],
                 False, 200, b"", b"1.1", [], "length", [])
    upgrade = is_upgrade(s)
    # an upgrade request's body would be taken for tunnel data by llhttp: not generated
    kind = "none" if upgrade else draw(st.sampled_from(
        ["none", "none", "length", "length", "chunked", "stream"]))
    s.body_kind = kind
    if kind == "length":
        s.chunks = [draw(st.binary(max_size=20))]
        framing = (cased(draw, b"Content-Length"), b"%d" % len(s.chunks[0]))
    elif kind == "chunked" and draw(st.booleans()):  # big: past STREAM_MIN
        sizes = [draw(st.integers(1, 40000)), draw(st.integers(1, 30000))]
        sizes.append(max(1, STREAM_MIN - sum(sizes) + draw(st.integers(-2, 300))))
        s.chunks = [bytes([97 + i]) * n for i, n in enumerate(sizes)]
        framing = (cased(draw, b"Transfer-Encoding"), b"chunked")
    elif kind == "chunked":
        s.chunks = draw(st.lists(st.binary(min_size=1, max_size=8), max_size=3))
        framing = (cased(draw, b"Transfer-Encoding"), b"chunked")
    elif kind == "stream":
        s.chunks = [b"s" * (STREAM_MIN + draw(st.integers(0, 100)))]
        framing = (cased(draw, b"Content-Length"), b"%d" % len(s.chunks[0]))
    if kind != "none":
        headers.insert(draw(st.integers(0, len(headers))), framing)
        if draw(st.integers(0, 3)) == 0:
            headers.insert(draw(st.integers(0, len(headers))),
                           (cased(draw, b"Expect"), b"100-continue"))

    # the member's answer
    if upgrade:
        s.status = draw(st.sampled_from([101, 101, 200, 404]))
    else:
        s.status = draw(st.sampled_from([200, 201, 204, 301, 304, 404, 500]))
    s.interim = s.status != 101 and draw(st.booleans())
    s.reason = draw(st.sampled_from([REASONS[s.status], b"", b"Whatever Reason"]))
    rnames = draw(st.lists(st.sampled_from(list(RESPONSE_HEADERS)), max_size=8))
    rheaders: Headers = [(cased(draw, n), draw(RESPONSE_HEADERS[n])) for n in rnames]
    if s.status == 101:
        s.rversion = b"1.1"
        s.rheaders = [(b"Upgrade", b"websocket"), (b"Connection", b"Upgrade")]
        for h in rheaders:
            if h[0].lower() not in (b"connection", b"upgrade"):
                s.rheaders.insert(draw(st.integers(0, len(s.rheaders))), h)
        s.tunnel_data = draw(st.sampled_from([b"", b"\x81\x02hi"]))
        return with_cuts(draw, s)
    s.rversion = draw(st.sampled_from([b"1.1", b"1.1", b"1.0"]))
    s.rheaders = rheaders
    if s.status == 204:
        s.framing = "close"  # nothing says a length; 204 has no body anyway
    elif s.status == 304:
        s.framing = draw(st.sampled_from(["length", "close"]))
    else:
        s.framing = draw(st.sampled_from(
            ["length", "chunked", "close"] if s.rversion == b"1.1" else ["length", "close"]))
    if s.framing == "chunked":
        s.rchunks = draw(st.lists(st.binary(min_size=1, max_size=8), max_size=3))
        rframing = (cased(draw, b"Transfer-Encoding"), b"chunked")
    else:
        s.rchunks = [draw(st.binary(max_size=12))] if s.sends_body else []
        rframing = (cased(draw, b"Content-Length"), b"%d" % len(b"".join(s.rchunks)))
    if s.framing != "close":
        s.rheaders.insert(draw(st.integers(0, len(s.rheaders))), rframing)
    return with_cuts(draw, s)


def with_cuts(draw: st.DrawFn, s: Scenario) -> Scenario:
    """Mostly one read per side; sometimes the bytes arrive in two or three reads."""
    for attr, n in (("req_cuts", len(s.wire_request())), ("resp_cuts", len(s.wire_response()))):
        if n > 1 and draw(st.integers(0, 3)) == 0:
            setattr(s, attr, sorted(set(draw(st.lists(st.integers(1, n - 1), min_size=1,
                                                      max_size=2)))))
    # a cut inside a body is rare by chance (bodies are short or hardly generated): ask for
    # one outright
    for attr, segments in (("req_cuts", s.request_segments()),
                           ("resp_cuts", s.response_segments())):
        inside: list[range] = []
        pos = 0
        for seg, is_body in segments:
            if is_body and len(seg) > 1:
                inside.append(range(pos + 1, pos + len(seg)))
            pos += len(seg)
        if inside and draw(st.integers(0, 2)) == 0:
            span = draw(st.sampled_from(inside))
            cut = draw(st.integers(span.start, span.stop - 1))
            setattr(s, attr, sorted({*getattr(s, attr), cut}))
    return s


def pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


# -- the reference model --------------------------------------------------------------------
def set_headers_of(sets: dict[str, str] | None) -> list[tuple[bytes, str]]:
    if sets is None:
        sets = {"Host": "$host", "X-Real-IP": "$remote_addr",
                "X-Forwarded-For": "$proxy_add_x_forwarded_for"}
    return [(k.encode(), v) for k, v in sets.items()]


def strip_cookie(value: bytes, name: bytes) -> bytes:
    """Only the inserted cookie is cut out (with its `;`); the rest goes on verbatim."""
    parts = value.split(b";")
    kept = [p for p in parts if p.strip().split(b"=", 1)[0] != name]
    return value if len(kept) == len(parts) else b";".join(kept).strip()


def cookie(cookie_headers: list[bytes], name: bytes) -> bytes | None:
    for h in cookie_headers:
        for part in h.split(b";"):
            k, eq, v = part.strip().partition(b"=")
            if eq and k == name:
                return v.strip().strip(b'"')
    return None


def route_after_dot(value: bytes | None) -> str | None:
    """`ABC.r1` -> `r1`: the text after the first dot, if any."""
    if not value or b"." not in value:
        return None
    return value.split(b".", 1)[1].decode() or None


def chosen_member(s: Scenario, balanced: int) -> tuple[str | None, Headers]:
    """Which member gets the request and the sticky response headers; None = the balancer's
    pick (equal-weight round robin: m0, m1, m0, ... over the picks it made)."""
    sticky = STICKY[s.sticky_index]
    by_route = {(r or n): n for n, r in MEMBERS}
    rr = MEMBERS[balanced % len(MEMBERS)][0]
    if sticky is None:
        return None, []
    cookies = [v for k, v in s.headers if k.lower() == b"cookie"]
    route = None
    path = s.target.split(b"?", 1)[0]
    i = path.lower().find(b";jsessionid=")
    if i >= 0:
        v = path[i + len(b";jsessionid="):]
        for sep in (b";", b"/", b"#"):
            v = v.split(sep, 1)[0]
        route = route_after_dot(v)
    if route is None:
        route = route_after_dot(cookie(cookies, b"JSESSIONID"))
    insert = sticky.get("insert")
    inserted = None
    if insert:
        got = cookie(cookies, insert.encode())
        if got:
            pre = sticky["prefix"].encode()
            inserted = (got[len(pre):] if pre and got.startswith(pre) else got).decode()
    wanted = route or inserted
    stuck = by_route.get(wanted) if wanted else None
    member = stuck or rr
    extra: Headers = []
    route_of_member = dict(MEMBERS)[member] or member
    if insert and inserted != route_of_member:
        sc = f"{insert}={sticky['prefix']}{route_of_member}; Path=/"
        if "max_age" in sticky:
            sc += f"; Max-Age={sticky['max_age']}"
        if sticky.get("httponly"):
            sc += "; HttpOnly"
        if sticky.get("secure"):
            sc += "; Secure"
        if sticky.get("samesite"):
            sc += f"; SameSite={sticky['samesite']}"
        extra.append((b"Set-Cookie", sc.encode()))
        if sticky.get("nocache"):
            extra.append((b"Cache-Control", b"private"))
    return stuck, extra


def nginx_host(value: bytes) -> bytes:
    """nginx's $host: lower-case, no port, no trailing dot; IPv6 keeps its brackets."""
    if value.startswith(b"["):
        value = value[:value.index(b"]") + 1]
    else:
        value = value.split(b":")[0]
    return value.rstrip(b".").lower()


def interpolate(value: str, host: bytes, peer: bytes, xff: bytes | None, s: Scenario,
                path: bytes) -> bytes:
    """nginx's variable interpolation in a proxy_set_header value (the variables known)."""
    out = b""
    i = 0
    raw = value.encode()
    while i < len(raw):
        if raw[i:i + 1] != b"$":
            out += raw[i:i + 1]
            i += 1
            continue
        j = i + 1
        if raw[j:j + 1] == b"{":
            k = raw.index(b"}", j)
            name, i = raw[j + 1:k], k + 1
        else:
            k = j
            while k < len(raw) and (raw[k:k + 1].isalnum() or raw[k:k + 1] == b"_"):
                k += 1
            name, i = raw[j:k], k
        if name == b"host":
            out += host
        elif name == b"remote_addr":
            out += peer
        elif name == b"proxy_add_x_forwarded_for":
            out += xff + b", " + peer if xff else peer
        elif name == b"scheme":
            out += b"http"
        elif name == b"request_uri":  # nginx: the URI as sent, without scheme and host
            out += path
        else:
            assert name.startswith(b"http_"), name
            out += first(s.headers, name[5:].replace(b"_", b"-").lower()) or b""
    return out


def expected_member_request(s: Scenario) -> bytes:
    sets = set_headers_of(SET_HEADERS[s.set_index])
    set_lower = {k.lower() for k, _ in sets}
    sticky = STICKY[s.sticky_index]
    strip = sticky["insert"].encode() if sticky and sticky.get("indirect") else None
    conn = first(s.headers, b"connection")
    listed = tokens(conn) if conn else set()  # QUIRK 3: the first Connection header only
    peer = s.peer[0].encode()
    host_line = first(s.headers, b"host") or b""
    target, url_host = s.target, None
    if target.lower().startswith(b"http://"):  # absolute form: the path goes on (nginx)
        rest = target[7:]
        slash = rest.find(b"/")
        url_host, target = (rest, b"/") if slash < 0 else (rest[:slash], rest[slash:])
    host = nginx_host(url_host if url_host is not None else host_line) or b"localhost"
    xffs = [v for k, v in s.headers if k.lower() == b"x-forwarded-for"]
    xff = b", ".join(xffs) if xffs else None

    client: Headers = []
    for k, v in s.headers:
        lk = k.lower()
        if lk in HOP or lk in listed or lk in (b"content-length", b"expect",
                                               b"x-forwarded-for") or lk in set_lower:
            continue
        if strip is not None and lk == b"cookie":
            v = strip_cookie(v, strip)
            if not v:
                continue
        client.append((k, v))
    front: Headers = []
    after: Headers = []
    for name, value in sets:  # QUIRK 2
        if is_upgrade(s) and name.lower() in (b"upgrade", b"connection"):
            continue  # the proxy's own Upgrade / Connection go out instead
        if value == "$host":
            front.append((name, host))
            continue
        got = interpolate(value, host, peer, xff, s, target)
        if got:  # an empty value is not sent (nginx)
            after.append((name, got))
    if xff is not None and b"x-forwarded-for" not in set_lower:
        after.append((b"X-Forwarded-For", xff))
    if is_upgrade(s):
        after += [(b"Upgrade", first(s.headers, b"upgrade") or b""), (b"Connection", b"upgrade")]
    body = s.body
    if s.body_kind == "chunked" and s.unlimited and len(body) >= STREAM_MIN:
        # streamed and re-chunked: one chunk for what had arrived when the body outgrew
        # STREAM_MIN (through the end of that read), then one per later read of the client
        after.append((b"Transfer-Encoding", b"chunked"))
        reads = s.body_per_read()
        sofar = 0
        chunks = [b""]
        for data in reads:
            if sofar < STREAM_MIN:
                chunks[0] += data
            elif data:
                chunks.append(data)
            sofar += len(data)
        body = b"".join(b"%x\r\n%b\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    elif body or s.method in (b"POST", b"PUT", b"PATCH"):
        after.append((b"Content-Length", b"%d" % len(body)))
    lines = [s.method + b" " + target + b" HTTP/1.1"]
    lines += [k + b": " + v for k, v in front + client + after]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def member_keeps_connection(s: Scenario) -> bool:
    """llhttp's keep-alive verdict on the member's response (pooled or closed)."""
    toks = all_tokens(s.rheaders, (b"connection", b"proxy-connection"))
    if s.rversion == b"1.1":
        keep = b"close" not in toks
    else:
        keep = b"keep-alive" in toks
    if s.method == b"HEAD" and s.framing == "close" and s.status >= 200:
        # the head has no length: only its Connection header decides (not Proxy-Connection)
        ctoks = all_tokens(s.rheaders, (b"connection",))
        keep = b"close" not in ctoks if s.rversion == b"1.1" else b"keep-alive" in ctoks
    no_body_status = s.status < 200 or s.status in (204, 304)
    needs_eof = not no_body_status and s.framing == "close" and s.method != b"HEAD"
    return keep and not needs_eof


@dataclass
class Expected:
    member: str
    to_member: bytes
    to_client: bytes
    client_closed: bool
    member_closed: bool


def expected_conversation(conv: list[Scenario]) -> list[Expected]:
    """What each exchange gives, up to the one after which the client connection is closed
    or has become a tunnel."""
    out: list[Expected] = []
    balanced = 0
    for s in conv:
        stuck, extra = chosen_member(s, balanced)
        if stuck is None:
            member = MEMBERS[balanced % len(MEMBERS)][0]
            balanced += 1
        else:
            member = stuck
        out.append(expected(s, member, extra))
        if out[-1].client_closed or s.status == 101:
            break
    return out


def expected(s: Scenario, member: str, extra: Headers) -> Expected:
    to_member = expected_member_request(s)
    upgrade = is_upgrade(s)
    prefix = b""
    if (s.body_kind in ("chunked", "stream") or (s.body_kind == "length" and s.body)) \
            and (first(s.headers, b"expect") or b"").lower() == b"100-continue" \
            and s.version == b"1.1":
        prefix = CONTINUE
    if s.status == 101:  # QUIRK 10: verbatim, no sticky headers; then a byte tunnel
        head = [b"HTTP/1.1 101 " + (s.reason or REASONS[101])]
        head += [k + b": " + v for k, v in s.rheaders]
        to_client = prefix + b"\r\n".join(head) + b"\r\n\r\n" + s.tunnel_data + b"pong"
        return Expected(member, to_member + b"ping", to_client, False, False)
    keep = request_keep_alive(s) and not upgrade  # a refused upgrade is the last answer
    conn = first(s.rheaders, b"connection")
    listed = tokens(conn) if conn else set()
    hs = [(k, v) for k, v in s.rheaders if k.lower() not in HOP and k.lower() not in listed]
    hs += extra
    no_body = s.method == b"HEAD" or s.status in (204, 304)
    rechunk = False
    if not no_body and s.framing != "length":
        if s.version == b"1.1":
            hs.append((b"Transfer-Encoding", b"chunked"))
            rechunk = True
        else:
            keep = False  # close-delimited for HTTP/1.0
    if not keep:
        hs.append((b"Connection", b"close"))
    elif s.version == b"1.0":
        hs.append((b"Connection", b"keep-alive"))
    head = [b"HTTP/1.1 %d " % s.status + (s.reason or REASONS[s.status])]
    head += [k + b": " + v for k, v in hs]
    body = b""
    if not no_body:
        if rechunk:
            # one chunk per body event: each member chunk (or the close-delimited body) as
            # far as one read of the member's socket carries it
            body = b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in s.body_events())
            body += b"0\r\n\r\n"
        else:
            body = b"".join(s.rchunks)
    to_client = prefix + b"\r\n".join(head) + b"\r\n\r\n" + body
    closed = not keep
    return Expected(member, to_member, to_client, closed, not member_keeps_connection(s))


# -- driving the real code ------------------------------------------------------------------
class FakeTransport:
    """Records writes; enough of asyncio.Transport for the proxy's connections."""

    def __init__(self, peer: tuple[str, int]) -> None:
        self.out: list[bytes] = []
        self.peer = peer
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.out.append(bytes(data))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.peer if name == "peername" else default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


@dataclass
class Observed:
    to_member: dict[str, bytes]
    member_writes: dict[str, int]
    member_closed: dict[str, bool]
    to_client: bytes
    response_writes: int  # client writes while the member's answer was read
    client_closed: bool


async def settle() -> None:
    """Let the proxy's tasks (slow path: streamed bodies, upgrades) run; bounded."""
    for _ in range(20):
        await asyncio.sleep(0)


def fresh_members(group: UpstreamGroup, loop: asyncio.AbstractEventLoop
                  ) -> tuple[dict[str, UpstreamConnection], dict[str, FakeTransport]]:
    """One new pooled connection per member (taken before any older one: the pool is LIFO)."""
    ups: dict[str, UpstreamConnection] = {}
    tps: dict[str, FakeTransport] = {}
    for peer in group.peers:
        conn = UpstreamConnection(peer)
        tps[peer.name] = t = FakeTransport(("127.0.0.1", PORTS[peer.name]))
        conn.connection_made(t)  # type: ignore[arg-type]
        group.release(conn, True, loop.time())  # pooled, as after an earlier request
        ups[peer.name] = conn
    return ups, tps


async def exchange(s: Scenario, client: ClientConnection, ct: FakeTransport,
                   group: UpstreamGroup) -> Observed:
    ups, tps = fresh_members(group, asyncio.get_running_loop())
    start = len(ct.out)
    for piece in pieces(s.wire_request(), s.req_cuts):
        client.data_received(piece)
        await settle()  # each read on its own loop turn, as from a socket
    sent = [name for name, t in tps.items() if t.out]
    assert len(sent) == 1, f"request went to {sent}"
    up = ups[sent[0]]
    before = len(ct.out)
    for piece in pieces(s.wire_response(), s.resp_cuts):
        up.data_received(piece)
        await settle()
    response_writes = len(ct.out) - before
    if s.status != 101 and s.sends_body and s.framing == "close":
        up.connection_lost(None)
    await settle()
    if s.status == 101:
        client.data_received(b"ping")
        up.data_received(b"pong")
    return Observed({n: b"".join(t.out) for n, t in tps.items()},
                    {n: len(t.out) for n, t in tps.items()},
                    {n: t.closed for n, t in tps.items()},
                    b"".join(ct.out[start:]), response_writes, ct.closed)


async def drive(conv: list[Scenario]) -> list[Observed]:
    s0 = conv[0]
    proxy = Proxy(load_config(s0.set_index, s0.sticky_index, s0.unlimited))
    client = ClientConnection(proxy)
    ct = FakeTransport(s0.peer)
    client.connection_made(ct)  # type: ignore[arg-type]
    got: list[Observed] = []
    try:
        for s in conv:
            got.append(await exchange(s, client, ct, proxy.default))
            if ct.closed or client.tunnel is not None:
                break
        return got
    finally:
        client.connection_lost(None)  # cancels its timer
        for task in list(proxy.tasks):
            task.cancel()
        await settle()


def run(conv: list[Scenario]) -> list[Observed]:
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(drive(conv))
    finally:
        loop.close()


@settings(max_examples=500, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(conversations())
def test_member_and_client_bytes_match_the_model(conv: list[Scenario]) -> None:
    wants = expected_conversation(conv)
    gots = run(conv)
    assert len(gots) == len(wants), "the client connection ended after a different request"
    for s, want, got in zip(conv, wants, gots, strict=False):
        other = next(n for n, _ in MEMBERS if n != want.member)
        assert got.to_member[other] == b"", "the request went to the wrong member"
        assert got.to_member[want.member] == want.to_member
        assert got.to_client == want.to_client
        assert got.client_closed == want.client_closed
        assert got.member_closed[want.member] == want.member_closed
        assert not got.member_closed[other]
        # docs/pylb.md: one member write for head and buffered body; one client write per
        # member read (head and body coalesced)
        if s.body_kind != "stream" and not (s.unlimited and len(s.body) >= STREAM_MIN):
            assert got.member_writes[want.member] == (2 if s.status == 101 else 1)
        if not s.resp_cuts:
            assert got.response_writes == 1


def test_seed_defaults_example() -> None:
    """One readable example of the seeds' defaults (Host / X-Real-IP / X-Forwarded-For)."""
    s = Scenario(0, 1, ("10.1.2.3", 40000), b"POST", b"/app?x=1", b"1.1",
                 [(b"Host", b"shop.example:8080"), (b"Connection", b"keep-alive, X-Trace"),
                  (b"X-Trace", b"t1"), (b"X-Forwarded-For", b"1.1.1.1"),
                  (b"Cookie", b"a=1; ROUTEID=.r1; b=2"), (b"Content-Length", b"2")],
                 "length", [b"hi"], False, 200, b"OK", b"1.1",
                 [(b"Content-Type", b"text/plain")], "close", [b"body"])
    assert expected_member_request(s) == (
        b"POST /app?x=1 HTTP/1.1\r\nHost: shop.example\r\nCookie: a=1; b=2\r\n"
        b"X-Real-IP: 10.1.2.3\r\nX-Forwarded-For: 1.1.1.1, 10.1.2.3\r\n"
        b"Content-Length: 2\r\n\r\nhi")
    [got] = run([s])
    assert got.to_member["m1"] == expected_member_request(s)
    assert got.to_client == (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n4\r\nbody\r\n0\r\n\r\n")
    assert not got.client_closed
