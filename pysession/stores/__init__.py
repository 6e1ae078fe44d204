"""Local stores for PersistentManager: FileStore (one file per session) and SQLiteStore
(a table shaped like Tomcat's JDBCStore `tomcat$sessions`). Network stores (memcached,
redis) live with their managers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pysession.store import Store
from pysession.stores.file import FileStore
from pysession.stores.sqlite import SQLiteStore

if TYPE_CHECKING:
    from pysession.options import ManagerEnv, Options

__all__ = ["FileStore", "SQLiteStore", "build_store"]


def build_store(opts: Options, env: ManagerEnv) -> Store:
    """`store = "file"` (+ `directory`) or `store = "sqlite"` (+ `database`, `table`)."""
    kind = opts.choice("store", ("file", "sqlite", "memory"), "file")
    app = env.context_path
    if kind == "file":
        d = opts.path("directory", env.work_dir)
        if d is None:
            safe = app.strip("/").replace("/", "_") or "ROOT"
            d = env.work_dir / "sessions" / safe
        return FileStore(d)
    if kind == "sqlite":
        db = opts.path("database", env.work_dir) or env.work_dir / "sessions.sqlite3"
        table = opts.string("table", "tomcat$sessions")
        try:
            return SQLiteStore(db, table=table, app_name=app)
        except ValueError as exc:
            raise opts.error(str(exc), "table", table) from None
    from pysession.store import MemoryStore

    return MemoryStore()
