"""FileStore (Tomcat's): one file per session, `<directory>/<id>.session`, written atomically
(temporary file + rename). Ids are checked against the Tomcat id format before they become
file names, so a forged id can never name a path outside the directory."""

from __future__ import annotations

import os
from pathlib import Path

from pysession.ids import parse_session_id
from pysession.store import Store, StoreError

SUFFIX = ".session"


class FileStore(Store):
    name = "file"

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def _path(self, sid: str) -> Path | None:
        if parse_session_id(sid) is None:
            return None
        return self.directory / (sid + SUFFIX)

    async def get(self, sid: str) -> bytes | None:
        p = self._path(sid)
        if p is None:
            return None
        try:
            return p.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"{p}: {exc.strerror}") from None

    async def set(self, sid: str, data: bytes, ttl: float | None = None) -> None:
        p = self._path(sid)
        if p is None:
            raise StoreError(f"not a session id: {sid!r}")
        tmp = p.with_name(p.name + ".tmp")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            os.replace(tmp, p)
        except OSError as exc:
            raise StoreError(f"{p}: {exc.strerror}") from None

    async def delete(self, sid: str) -> None:
        p = self._path(sid)
        if p is not None:
            p.unlink(missing_ok=True)

    async def keys(self) -> list[str]:
        try:
            return sorted(f.name[:-len(SUFFIX)] for f in self.directory.iterdir()
                          if f.name.endswith(SUFFIX))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StoreError(f"{self.directory}: {exc.strerror}") from None

    async def touch(self, sid: str, ttl: float | None = None) -> bool:
        p = self._path(sid)
        if p is None or not p.exists():
            return False
        os.utime(p)
        return True
