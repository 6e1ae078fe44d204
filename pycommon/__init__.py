"""What the pycluster daemons share, and nothing else.

The HTTP/1.1 codec (`pycommon.http`), the daemon lifecycle (`pycommon.lifecycle`), the
config-error type and TOML location helpers (`pycommon.config`) and the msgpack type policy
(`pycommon.wire`).
"""

from pycommon.version import __version__

__all__ = ["__version__"]
