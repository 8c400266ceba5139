"""Typed reading of the gateway's JSON: wrong shapes become :class:`ProtocolError`, not KeyError."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from .errors import ProtocolError


def loads(body: bytes) -> Any:
    """JSON with every non-integer number as :class:`Decimal`: money is never a float."""
    try:
        return json.loads(body, parse_float=Decimal)
    except ValueError as e:
        raise ProtocolError(f"the gateway answered invalid JSON: {e}") from None


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON: the exact bytes a signature covers."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_default).encode()


def _default(value: object) -> Any:
    if isinstance(value, Decimal):
        # Request fields are parameters (temperature, top_p), never money.
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


_FRACTION = re.compile(r"\.(\d+)")


def parse_datetime(text: str) -> dt.datetime:
    """RFC 3339 (``…Z``, any fraction length) on every supported Python."""
    # Python 3.10 reads only 3 or 6 fraction digits: write exactly 6.
    fixed = _FRACTION.sub(
        lambda m: "." + m.group(1)[:6].ljust(6, "0"),
        text.strip().replace("Z", "+00:00").replace("z", "+00:00"),
    )
    try:
        return dt.datetime.fromisoformat(fixed)
    except ValueError:
        raise ProtocolError(f"not an RFC 3339 time: {text!r}") from None


class Reader:
    """Reads one JSON object, naming the object and field in every error."""

    __slots__ = ("_d", "_what")

    def __init__(self, value: Any, what: str) -> None:
        if not isinstance(value, Mapping):
            raise ProtocolError(f"{what}: expected a JSON object")
        self._d: Mapping[str, Any] = value
        self._what = what

    def _bad(self, key: str, expected: str) -> ProtocolError:
        return ProtocolError(f"{self._what}.{key}: expected {expected}")

    def has(self, key: str) -> bool:
        return self._d.get(key) is not None

    def raw(self, key: str) -> Any:
        return self._d.get(key)

    def mapping(self) -> Mapping[str, Any]:
        """The whole object, for data passed on as sent."""
        return self._d

    def string(self, key: str) -> str:
        v = self._d.get(key)
        if not isinstance(v, str):
            raise self._bad(key, "a string")
        return v

    def opt_str(self, key: str) -> str | None:
        return None if self._d.get(key) is None else self.string(key)

    def integer(self, key: str) -> int:
        v = self._d.get(key)
        if isinstance(v, bool) or not isinstance(v, int):
            raise self._bad(key, "an integer")
        return v

    def opt_int(self, key: str) -> int | None:
        return None if self._d.get(key) is None else self.integer(key)

    def boolean(self, key: str) -> bool:
        v = self._d.get(key)
        if not isinstance(v, bool):
            raise self._bad(key, "a boolean")
        return v

    def decimal(self, key: str) -> Decimal:
        """A decimal string or JSON number, exactly."""
        v = self._d.get(key)
        if isinstance(v, bool):
            raise self._bad(key, "a decimal")
        if isinstance(v, (int, Decimal)):
            return Decimal(v)
        if isinstance(v, str):
            try:
                return Decimal(v)
            except InvalidOperation:
                pass
        raise self._bad(key, "a decimal")

    def datetime(self, key: str) -> dt.datetime:
        return parse_datetime(self.string(key))

    def date(self, key: str) -> dt.date:
        try:
            return dt.date.fromisoformat(self.string(key))
        except ValueError:
            raise self._bad(key, "a YYYY-MM-DD date") from None

    def obj(self, key: str) -> Reader:
        return Reader(self._d.get(key), f"{self._what}.{key}")

    def opt_obj(self, key: str) -> Reader | None:
        return None if self._d.get(key) is None else self.obj(key)

    def array(self, key: str, *, required: bool = True) -> list[Reader]:
        v = self._d.get(key)
        if v is None and not required:
            return []
        if not isinstance(v, list):
            raise self._bad(key, "an array")
        return [Reader(item, f"{self._what}.{key}[{i}]") for i, item in enumerate(v)]
