"""The IETF httpapi ``RateLimit-Policy`` / ``RateLimit`` headers (draft-11), parsed.

The gateway sends, for example::

    RateLimit-Policy: "rpm";q=600;w=60, "tpm";q=2000000;w=60, "tpd";q=100000000;w=86400
    RateLimit: "rpm";r=599;t=1, "tpm";r=1997952;t=1, "tpd";r=99997952;t=2

Both are structured-field lists (RFC 8941) of a quoted policy name with parameters; they are
merged here by name into one :class:`RateLimitPolicy` each.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class RateLimitPolicy:
    """One limit: ``quota`` per ``window`` seconds; ``remaining`` now, full again in ``reset`` s."""

    name: str
    quota: int | None = None
    window: int | None = None
    remaining: int | None = None
    reset: int | None = None


@dataclass(frozen=True, slots=True)
class RateLimit(Mapping[str, RateLimitPolicy]):
    """The caller's limits, by policy name (``rpm``, ``tpm``, ``tpd``, ``subnet-rpm``, …)."""

    policies: Mapping[str, RateLimitPolicy] = field(default_factory=dict)

    def __getitem__(self, name: str) -> RateLimitPolicy:
        return self.policies[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.policies)

    def __len__(self) -> int:
        return len(self.policies)

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> RateLimit | None:
        """The parsed headers; None when the answer carries neither."""
        policy = _header(headers, "ratelimit-policy")
        state = _header(headers, "ratelimit")
        if policy is None and state is None:
            return None
        merged: dict[str, dict[str, int]] = {}
        for name, params in _parse_list(policy or ""):
            merged.setdefault(name, {}).update(params)
        for name, params in _parse_list(state or ""):
            merged.setdefault(name, {}).update(params)
        return cls(
            {
                name: RateLimitPolicy(
                    name=name,
                    quota=p.get("q"),
                    window=p.get("w"),
                    remaining=p.get("r"),
                    reset=p.get("t"),
                )
                for name, p in merged.items()
            }
        )


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        # A plain dict may keep the sender's spelling.
        for key, v in headers.items():
            if key.lower() == name:
                return v
    return value


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for ch in text:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\" and quoted:
            current.append(ch)
            escaped = True
        elif ch == '"':
            current.append(ch)
            quoted = not quoted
        elif ch == sep and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def _unquote(token: str) -> str:
    token = token.strip()
    if len(token) >= 2 and token[0] == token[-1] == '"':
        return token[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return token


def _parse_list(value: str) -> list[tuple[str, dict[str, int]]]:
    """Members ``"name";k=v;…`` with integer parameters; anything else is skipped."""
    out: list[tuple[str, dict[str, int]]] = []
    for member in _split_outside_quotes(value, ","):
        if not member.strip():
            continue
        pieces = _split_outside_quotes(member, ";")
        name = _unquote(pieces[0])
        if not name:
            continue
        params: dict[str, int] = {}
        for piece in pieces[1:]:
            key, _, raw = piece.partition("=")
            key = key.strip()
            try:
                params[key] = int(raw.strip())
            except ValueError:
                continue
        out.append((name, params))
    return out
