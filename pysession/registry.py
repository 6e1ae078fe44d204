"""Manager types by name: one line per type, imported lazily (`module:callable`).

A factory is `build(opts: Options, env: ManagerEnv) -> Manager`; it reads its keys from
`opts` (typed getters with file:line errors) and calls `opts.done()` to refuse unknown keys.
To add a manager type, add one line here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import cast

from pysession.manager import Manager
from pysession.options import ManagerEnv, Options

Factory = Callable[[Options, ManagerEnv], Manager]

MANAGER_TYPES: dict[str, str] = {
    "standard": "pysession.manager:StandardManager.from_options",
    "persistent": "pysession.persistent:PersistentManager.from_options",
    "cookie": "pysession.cookie_manager:CookieManager.from_options",
    "delta": "pysession.cluster.delta:DeltaManager.from_options",
    "backup": "pysession.cluster.backup:BackupManager.from_options",
    "memcached": "pysession.managers.memcached:MemcachedSessionManager.from_options",
    "redis": "pysession.managers.redis:RedisSessionManager.from_options",
}


def factory_for(name: str) -> Factory:
    target = MANAGER_TYPES[name]
    mod_name, _, attr = target.partition(":")
    obj: object = importlib.import_module(mod_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return cast(Factory, obj)


def build_manager(opts: Options, env: ManagerEnv) -> Manager:
    """The manager `opts` describe; ConfigError (file:line) for an unknown type or option."""
    name = opts.type
    if name not in MANAGER_TYPES:
        raise opts.error(f"unknown session manager type {name!r} (known: "
                         f"{', '.join(sorted(MANAGER_TYPES))})", "type", name)
    manager = factory_for(name)(opts, env)
    opts.done()
    return manager
