"""Session managers and stores, usable on their own (e.g. behind aiohttp) or inside pynode.

Manager / Store split as in Tomcat's catalina.session: a manager decides *when* a session is
created, loaded, saved, replicated and expired; a store only knows *how* to get/set/delete
bytes. The decision logic is sans-IO: every call takes `now` (seconds) as an argument.
"""

from pysession.ids import new_session_id, parse_session_id
from pysession.manager import Manager, SessionLimitExceeded, StandardManager
from pysession.session import Session

__all__ = ["Manager", "Session", "SessionLimitExceeded", "StandardManager", "new_session_id",
           "parse_session_id"]
