"""Seed 003's index.jsp, one page for every node: TomcatA in red, TomcatB in blue, ..."""

from __future__ import annotations

import html
import zlib

from pyservlet.api import HttpServlet, Request, Response

_COLOURS = ("red", "blue", "green", "purple", "orange", "teal")


class TomcatPage(HttpServlet):
    async def do_get(self, request: Request) -> Response:
        node = (self.config.route if self.config is not None else None) or "-"
        s = request.get_session(True)
        assert s is not None
        s.set_attribute("magedu.com", "magedu.com")
        colour = _COLOURS[zlib.crc32(node.encode()) % len(_COLOURS)]
        n = html.escape(node)
        page = f"""<html>
  <head><title>Tomcat {n}</title></head>
  <body>
    <h1><font color="{colour}">Tomcat {n}</font></h1>
    <table align="centre" border="1">
      <tr>
        <td>Session ID</td>
        <td id="session-id">{html.escape(s.id)}</td>
      </tr>
      <tr>
        <td>Created on</td>
        <td id="created">{s.get_creation_time()}</td>
     </tr>
    </table>
  </body>
</html>
"""
        return Response(200, page)
