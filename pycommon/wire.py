"""msgpack with an explicit type policy: the only serialisation format on wires and in stores.

Allowed by default: None, bool, int, float, str, bytes, list (tuples become lists), dict, and
`datetime.datetime` (as the msgpack timestamp extension; naive datetimes are taken as UTC).
Anything else must be registered with an ext code, an encoder to bytes and a decoder from
bytes. Unknown types are refused when packing (`TypeNotAllowed`) and unknown ext codes are
refused when unpacking (`WireError`) — there is no pickle fallback, ever.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack


class WireError(ValueError):
    """Bytes that do not decode under the type policy."""


class TypeNotAllowed(TypeError):
    """A value whose type the policy does not allow (cf. Tomcat's 'Non-serializable attribute')."""


@dataclass(frozen=True)
class _Registered:
    cls: type
    code: int
    encode: Callable[[Any], bytes]
    decode: Callable[[bytes], Any]


class TypePolicy:
    """A set of allowed extension types on top of msgpack's native ones."""

    def __init__(self) -> None:
        self._by_cls: dict[type, _Registered] = {}
        self._by_code: dict[int, _Registered] = {}

    def register(self, cls: type, code: int, encode: Callable[[Any], bytes],
                 decode: Callable[[bytes], Any]) -> None:
        if not 0 <= code <= 127:
            raise ValueError("ext code must be in 0..127")
        if code in self._by_code and self._by_code[code].cls is not cls:
            raise ValueError(f"ext code {code} already used by {self._by_code[code].cls.__name__}")
        reg = _Registered(cls, code, encode, decode)
        self._by_cls[cls] = reg
        self._by_code[code] = reg

    def allows(self, value: Any) -> bool:
        try:
            self.check(value)
        except TypeNotAllowed:
            return False
        return True

    def check(self, value: Any, _depth: int = 0) -> None:
        """Raise TypeNotAllowed naming the first value the policy refuses."""
        if _depth > 64:
            raise TypeNotAllowed("value nested too deeply")
        if value is None or isinstance(value, bool | int | float | str | bytes | _dt.datetime):
            return
        if isinstance(value, list | tuple):
            for v in value:
                self.check(v, _depth + 1)
            return
        if isinstance(value, dict):
            for k, v in value.items():
                self.check(k, _depth + 1)
                self.check(v, _depth + 1)
            return
        if type(value) in self._by_cls:
            return
        raise TypeNotAllowed(f"type {type(value).__qualname__} is not allowed by the type policy")

    def _default(self, obj: Any) -> Any:
        if isinstance(obj, _dt.datetime):
            if obj.tzinfo is None:
                obj = obj.replace(tzinfo=_dt.UTC)
            return msgpack.Timestamp.from_datetime(obj)
        reg = self._by_cls.get(type(obj))
        if reg is None:
            raise TypeNotAllowed(
                f"type {type(obj).__qualname__} is not allowed by the type policy")
        return msgpack.ExtType(reg.code, reg.encode(obj))

    def _ext_hook(self, code: int, data: bytes) -> Any:
        reg = self._by_code.get(code)
        if reg is None:
            raise WireError(f"unknown ext type {code}")
        return reg.decode(data)

    def packb(self, value: Any) -> bytes:
        try:
            return msgpack.packb(value, default=self._default, use_bin_type=True,
                                 datetime=False, strict_types=False)
        except TypeNotAllowed:
            raise
        except (TypeError, ValueError, OverflowError) as exc:
            raise TypeNotAllowed(str(exc)) from None

    def unpackb(self, data: bytes, max_size: int = 64 * 1024 * 1024) -> Any:
        if len(data) > max_size:
            raise WireError("message too large")
        try:
            return msgpack.unpackb(data, raw=False, ext_hook=self._ext_hook, timestamp=3,
                                   strict_map_key=False)
        except WireError:
            raise
        except Exception as exc:  # msgpack raises several unrelated types on garbage
            raise WireError(f"undecodable message: {exc.__class__.__name__}: {exc}") from None


DEFAULT_POLICY = TypePolicy()


def packb(value: Any) -> bytes:
    return DEFAULT_POLICY.packb(value)


def unpackb(data: bytes) -> Any:
    return DEFAULT_POLICY.unpackb(data)
