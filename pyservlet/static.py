"""Static files of a webapp (Tomcat's DefaultServlet, the small part of it we need).

Files under the webapp's `static` folder, GET and HEAD only, never outside the root (resolved
paths are checked), small files read per request with Last-Modified and If-Modified-Since.
"""

from __future__ import annotations

import mimetypes
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path

from pyservlet.api import Request, Response

MAX_STATIC = 16 * 1024 * 1024


class StaticFiles:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def resolve(self, rel: str) -> Path | None:
        p = (self.root / rel.lstrip("/")).resolve()
        if p != self.root and self.root not in p.parents:
            return None
        return p

    def serve(self, request: Request, rel: str, welcome: list[str]) -> Response:
        if request.method not in ("GET", "HEAD"):
            r = Response(405, "Method Not Allowed\n", "text/plain")
            r.set_header("Allow", "GET, HEAD")
            return r
        p = self.resolve(rel)
        if p is not None and p.is_dir():
            for w in welcome or ["index.html"]:
                if (p / w).is_file():
                    p = p / w
                    break
        if p is None or not p.is_file():
            return Response(404, "Not Found\n", "text/plain")
        st = p.stat()
        if st.st_size > MAX_STATIC:
            return Response(403, "Forbidden\n", "text/plain")
        ims = request.header("if-modified-since")
        if ims:
            try:
                if int(st.st_mtime) <= parsedate_to_datetime(ims).timestamp():
                    r = Response(304, b"")
                    r.headers = []
                    return r
            except (TypeError, ValueError):
                pass
        ctype = mimetypes.guess_type(p.name)[0] or "application/octet-stream"
        if ctype.startswith("text/"):
            ctype += "; charset=utf-8"
        r = Response(200, p.read_bytes(), ctype)
        r.set_header("Last-Modified", formatdate(st.st_mtime, usegmt=True))
        return r
