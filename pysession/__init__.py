"""Session managers and stores, usable on their own (e.g. behind aiohttp) or inside pynode.

Manager / Store split as in Tomcat's catalina.session: a manager decides *when* a session is
created, loaded, saved, replicated and expired; a store only knows *how* to get/set/delete
bytes. The decision logic is sans-IO: every call takes `now` (seconds) as an argument.
The interface is written down in docs/sessions.md.
"""

from pysession.binding import CookieSettings, SessionBinding
from pysession.events import SessionListener
from pysession.ids import new_session_id, parse_session_id
from pysession.manager import (
    Manager,
    RequestInfo,
    SessionLimitExceeded,
    SetCookie,
    StandardManager,
)
from pysession.options import ManagerEnv, Options
from pysession.serializer import SessionSerializer
from pysession.session import NotSerializableError, Session
from pysession.store import MemoryStore, Store, StoreError

__all__ = ["CookieSettings", "Manager", "ManagerEnv", "MemoryStore", "NotSerializableError",
           "Options", "RequestInfo", "Session", "SessionBinding", "SessionLimitExceeded",
           "SessionListener", "SessionSerializer", "SetCookie", "StandardManager", "Store",
           "StoreError", "new_session_id", "parse_session_id"]
