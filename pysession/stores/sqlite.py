"""SQLiteStore: Tomcat's JDBCStore table, in SQLite from the stdlib.

    CREATE TABLE "tomcat$sessions" (
      session_id     VARCHAR(100) NOT NULL PRIMARY KEY,
      valid_session  CHAR(1) NOT NULL,
      max_inactive   INT NOT NULL,
      last_access    BIGINT NOT NULL,
      app_name       VARCHAR(255),
      session_data   BLOB          -- msgpack (pysession.serializer), never Java/pickle
    );

`app_name` is the context path, so several contexts share one table the way Tomcat's do.
`last_access` is milliseconds since the epoch when the row was written (this is an IO shell,
it reads the wall clock); expiry decisions use the times inside the record. SQLite calls are
local and short, so they run inline (WAL mode, no thread hop).
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from pysession.store import Store, StoreError

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")


class SQLiteStore(Store):
    name = "sqlite"

    def __init__(self, database: str | Path, table: str = "tomcat$sessions",
                 app_name: str = "/", clock: Callable[[], float] = time.time) -> None:
        if not _IDENT.match(table):
            raise ValueError(f"table: not a plain SQL identifier: {table!r}")
        self.database = str(database)
        self.table = table
        self.app_name = app_name
        self.clock = clock
        self._db: sqlite3.Connection | None = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            try:
                if self.database != ":memory:":
                    Path(self.database).parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self.database, isolation_level=None)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute(f'CREATE TABLE IF NOT EXISTS "{self.table}" ('
                           "session_id VARCHAR(100) NOT NULL PRIMARY KEY, "
                           "valid_session CHAR(1) NOT NULL, max_inactive INT NOT NULL, "
                           "last_access BIGINT NOT NULL, app_name VARCHAR(255), "
                           "session_data BLOB)")
                db.execute(f'CREATE INDEX IF NOT EXISTS "{self.table}_app" '
                           f'ON "{self.table}" (app_name)')
            except (sqlite3.Error, OSError) as exc:
                raise StoreError(f"{self.database}: {exc}") from None
            self._db = db
        return self._db

    def _run(self, sql: str, args: tuple[object, ...]) -> list[tuple[object, ...]]:
        try:
            return self.db.execute(sql.replace("$T", f'"{self.table}"'), args).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"{self.database}: {exc}") from None

    async def get(self, sid: str) -> bytes | None:
        rows = self._run("SELECT session_data FROM $T WHERE session_id = ? AND app_name = ?",
                         (sid, self.app_name))
        if not rows or rows[0][0] is None:
            return None
        blob = rows[0][0]
        return bytes(blob) if isinstance(blob, bytes | bytearray | memoryview) else None

    async def set(self, sid: str, data: bytes, ttl: float | None = None) -> None:
        self._run("INSERT OR REPLACE INTO $T (session_id, valid_session, max_inactive, "
                  "last_access, app_name, session_data) VALUES (?, '1', ?, ?, ?, ?)",
                  (sid, int(ttl) if ttl is not None else -1, int(self.clock() * 1000),
                   self.app_name, sqlite3.Binary(data)))

    async def delete(self, sid: str) -> None:
        self._run("DELETE FROM $T WHERE session_id = ? AND app_name = ?", (sid, self.app_name))

    async def keys(self) -> list[str]:
        return [str(r[0]) for r in self._run("SELECT session_id FROM $T WHERE app_name = ? "
                                             "ORDER BY session_id", (self.app_name,))]

    async def touch(self, sid: str, ttl: float | None = None) -> bool:
        before = self.db.total_changes
        self._run("UPDATE $T SET last_access = ? WHERE session_id = ? AND app_name = ?",
                  (int(self.clock() * 1000), sid, self.app_name))
        return self.db.total_changes > before

    async def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
