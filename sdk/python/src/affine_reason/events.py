"""The typed events of a streamed ``/v1/reason`` answer (docs/API.md §4.3).

``reasoning`` and ``output`` carry text deltas; exactly one ``done`` (the result without the
texts: usage, cost, timing) or ``error`` (the problem that ended the answer) comes last.
Events of a type this version does not know are skipped, as the API's versioning asks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ._json import Reader, loads
from .errors import ApiError, ProtocolError
from .models import Cost, ReasonDone, Usage
from .ratelimit import RateLimit


@dataclass(frozen=True, slots=True)
class ReasoningEvent:
    """A piece of the model's reasoning."""

    delta: str
    type: Literal["reasoning"] = "reasoning"


@dataclass(frozen=True, slots=True)
class OutputEvent:
    """A piece of the final answer."""

    delta: str
    type: Literal["output"] = "output"


@dataclass(frozen=True, slots=True)
class DoneEvent:
    """The answer is complete; ``result`` has its usage, cost and timing (no texts)."""

    result: ReasonDone
    type: Literal["done"] = "done"

    @property
    def usage(self) -> Usage:
        """The answer's token usage."""
        return self.result.usage

    @property
    def cost(self) -> Cost:
        """What the answer cost."""
        return self.result.cost


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    """The answer failed after it began; ``error`` says why (what came before is charged)."""

    error: ApiError
    type: Literal["error"] = "error"

    @property
    def code(self) -> str:
        """The error's stable code."""
        return self.error.code


ReasonEvent = ReasoningEvent | OutputEvent | DoneEvent | ErrorEvent


def parse_event(
    name: str, data: str, request_id: str | None, rate_limit: RateLimit | None
) -> ReasonEvent | None:
    """One SSE event of the stream as a typed event; None for a type this version skips."""
    if name not in ("reasoning", "output", "done", "error"):
        return None
    value = loads(data.encode())
    if name == "error":
        if not isinstance(value, dict):
            raise ProtocolError("error event: expected a problem object")
        return ErrorEvent(
            ApiError.from_problem(value, request_id=request_id, rate_limit=rate_limit)
        )
    r = Reader(value, f"{name} event")
    if name == "done":
        return DoneEvent(ReasonDone.from_json(r, request_id, rate_limit))
    if name == "reasoning":
        return ReasoningEvent(r.string("delta"))
    return OutputEvent(r.string("delta"))
