"""``POST /v1/responses`` (docs/API.md §5.2): the stateless subset of Open Responses.

The ``response`` object as typed dataclasses, the streamed events, and the request body.
Stateful fields (``previous_response_id``, ``store=True``, ``tools``, …) are sent as given:
the gateway refuses them with 400 ``unsupported_parameter``, raised as :class:`ApiError`.
Events of a type this version does not know are skipped, as the API's versioning asks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast, get_args

from . import _json
from ._json import Reader
from .errors import ApiError, ProtocolError
from .models import Cost
from .ratelimit import RateLimit


def responses_body(input: Any, *, model: str, stream: bool = False, **fields: Any) -> bytes:
    """The exact JSON bytes :meth:`Client.responses` sends (to sign them yourself).

    Fields left as None are omitted; ``stream`` is sent only when true.
    """
    body: dict[str, Any] = {"model": model, "input": input}
    body.update({k: v for k, v in fields.items() if v is not None})
    if stream:
        body["stream"] = True
    return _json.dumps(body)


@dataclass(frozen=True, slots=True)
class ResponseTextPart:
    """A text part: ``reasoning_text``, ``summary_text`` or ``output_text``."""

    type: str
    text: str

    @classmethod
    def from_json(cls, r: Reader) -> ResponseTextPart:
        """Reads the gateway's JSON object (fields added later are ignored)."""
        return cls(type=r.string("type"), text=r.opt_str("text") or "")


def _parts(r: Reader, key: str) -> tuple[ResponseTextPart, ...]:
    return tuple(ResponseTextPart.from_json(p) for p in r.array(key, required=False))


@dataclass(frozen=True, slots=True)
class ResponseReasoningItem:
    """The model's reasoning: ``content`` parts, or ``summary`` parts when one was asked for."""

    id: str
    status: str | None
    summary: tuple[ResponseTextPart, ...]
    content: tuple[ResponseTextPart, ...]
    type: Literal["reasoning"] = "reasoning"

    @property
    def text(self) -> str:
        """The reasoning: the content, or the summary, parts concatenated."""
        return "".join(p.text for p in (*self.content, *self.summary))


@dataclass(frozen=True, slots=True)
class ResponseMessageItem:
    """The answer: ``output_text`` parts."""

    id: str
    role: str
    status: str | None
    content: tuple[ResponseTextPart, ...]
    type: Literal["message"] = "message"

    @property
    def text(self) -> str:
        """The answer's text."""
        return "".join(p.text for p in self.content)


@dataclass(frozen=True, slots=True)
class ResponseOtherItem:
    """An output item of a type this version does not know, as sent."""

    type: str
    data: Mapping[str, Any]


ResponseOutputItem = ResponseReasoningItem | ResponseMessageItem | ResponseOtherItem


def _item(r: Reader) -> ResponseOutputItem:
    kind = r.string("type")
    if kind == "reasoning":
        return ResponseReasoningItem(
            id=r.string("id"),
            status=r.opt_str("status"),
            summary=_parts(r, "summary"),
            content=_parts(r, "content"),
        )
    if kind == "message":
        return ResponseMessageItem(
            id=r.string("id"),
            role=r.string("role"),
            status=r.opt_str("status"),
            content=_parts(r, "content"),
        )
    return ResponseOtherItem(type=kind, data=dict(r.mapping()))


@dataclass(frozen=True, slots=True)
class ResponseUsage:
    """Tokens of a response; ``output_tokens`` includes ``reasoning_tokens``."""

    input_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cached_tokens: int
    total_tokens: int

    @classmethod
    def from_json(cls, r: Reader) -> ResponseUsage:
        """Reads the gateway's JSON object (fields added later are ignored)."""
        out = r.opt_obj("output_tokens_details")
        inp = r.opt_obj("input_tokens_details")
        return cls(
            input_tokens=r.integer("input_tokens"),
            output_tokens=r.integer("output_tokens"),
            reasoning_tokens=(out.opt_int("reasoning_tokens") or 0) if out else 0,
            cached_tokens=(inp.opt_int("cached_tokens") or 0) if inp else 0,
            total_tokens=r.integer("total_tokens"),
        )


@dataclass(frozen=True, slots=True)
class Response:
    """A ``response`` object: the whole answer, or what a stream's lifecycle events carry.

    ``status`` is ``completed``, ``incomplete`` (see ``incomplete_details``), ``in_progress``
    or ``failed`` (see ``error``); ``usage`` and ``cost`` are set once the answer ended.
    ``data`` is the object as sent (the request's echo: ``instructions``, ``reasoning``, …).
    """

    id: str
    created_at: int
    status: str
    model: str
    output: tuple[ResponseOutputItem, ...]
    usage: ResponseUsage | None
    cost: Cost | None
    incomplete_details: Mapping[str, Any] | None
    error: Mapping[str, Any] | None
    metadata: Mapping[str, str]
    data: Mapping[str, Any] = field(repr=False)
    request_id: str | None = None
    rate_limit: RateLimit | None = None

    @property
    def output_text(self) -> str:
        """The answer's text (the message items' ``output_text``)."""
        return "".join(i.text for i in self.output if isinstance(i, ResponseMessageItem))

    @property
    def reasoning_text(self) -> str | None:
        """The reasoning, when the response has a reasoning item."""
        for i in self.output:
            if isinstance(i, ResponseReasoningItem):
                return i.text
        return None

    @classmethod
    def from_json(
        cls, r: Reader, request_id: str | None = None, rate_limit: RateLimit | None = None
    ) -> Response:
        """Reads the gateway's JSON object (fields added later are ignored)."""
        usage = r.opt_obj("usage")
        cost = r.opt_obj("cost")
        metadata = r.raw("metadata")
        incomplete = r.raw("incomplete_details")
        error = r.raw("error")
        return cls(
            id=r.string("id"),
            created_at=r.integer("created_at"),
            status=r.string("status"),
            model=r.string("model"),
            output=tuple(_item(i) for i in r.array("output", required=False)),
            usage=ResponseUsage.from_json(usage) if usage else None,
            cost=Cost.from_json(cost) if cost else None,
            incomplete_details=incomplete if isinstance(incomplete, Mapping) else None,
            error=error if isinstance(error, Mapping) else None,
            metadata=dict(metadata) if isinstance(metadata, Mapping) else {},
            data=dict(r.mapping()),
            request_id=request_id,
            rate_limit=rate_limit,
        )


LifecycleType = Literal[
    "response.created",
    "response.in_progress",
    "response.completed",
    "response.incomplete",
    "response.failed",
]
ItemType = Literal["response.output_item.added", "response.output_item.done"]
PartType = Literal[
    "response.content_part.added",
    "response.content_part.done",
    "response.reasoning_summary_part.added",
    "response.reasoning_summary_part.done",
]
DeltaType = Literal[
    "response.reasoning_text.delta",
    "response.reasoning_summary_text.delta",
    "response.output_text.delta",
]
DoneType = Literal[
    "response.reasoning_text.done",
    "response.reasoning_summary_text.done",
    "response.output_text.done",
]
TERMINAL = ("response.completed", "response.incomplete", "response.failed")


@dataclass(frozen=True, slots=True)
class ResponseLifecycleEvent:
    """``response.created`` / ``in_progress``, and the last event: ``response.completed``,
    ``response.incomplete`` or ``response.failed`` (the whole object, with usage and cost).
    """

    type: LifecycleType
    response: Response
    sequence_number: int


@dataclass(frozen=True, slots=True)
class ResponseItemEvent:
    """``response.output_item.added`` (the item without content) or ``.done`` (whole)."""

    type: ItemType
    output_index: int
    item: ResponseOutputItem
    sequence_number: int


@dataclass(frozen=True, slots=True)
class ResponsePartEvent:
    """``response.content_part.added``/``.done``, ``response.reasoning_summary_part.*``.

    ``index`` is the event's ``content_index`` (or ``summary_index``).
    """

    type: PartType
    item_id: str
    output_index: int
    index: int
    part: ResponseTextPart
    sequence_number: int


@dataclass(frozen=True, slots=True)
class ResponseTextDeltaEvent:
    """A piece of text: ``response.reasoning_text.delta``,
    ``response.reasoning_summary_text.delta`` or ``response.output_text.delta``.
    """

    type: DeltaType
    item_id: str
    output_index: int
    index: int
    delta: str
    sequence_number: int


@dataclass(frozen=True, slots=True)
class ResponseTextDoneEvent:
    """A part's whole text: ``response.reasoning_text.done``,
    ``response.reasoning_summary_text.done`` or ``response.output_text.done``.
    """

    type: DoneType
    item_id: str
    output_index: int
    index: int
    text: str
    sequence_number: int


@dataclass(frozen=True, slots=True)
class ResponseErrorEvent:
    """``error``: the answer failed after it began; ``response.failed`` follows."""

    error: ApiError
    sequence_number: int
    type: Literal["error"] = "error"

    @property
    def code(self) -> str:
        """The error's stable code."""
        return self.error.code


ResponseEvent = (
    ResponseLifecycleEvent
    | ResponseItemEvent
    | ResponsePartEvent
    | ResponseTextDeltaEvent
    | ResponseTextDoneEvent
    | ResponseErrorEvent
)

_LIFECYCLE = set(get_args(LifecycleType))
_ITEMS = set(get_args(ItemType))
_PARTS = set(get_args(PartType))
_DELTAS = set(get_args(DeltaType))
_DONES = set(get_args(DoneType))


def parse_response_event(
    name: str, data: str, request_id: str | None, rate_limit: RateLimit | None
) -> ResponseEvent | None:
    """One SSE event of the stream as a typed event; None for a type this version skips."""
    value = _json.loads(data.encode())
    r = Reader(value, f"{name} event")
    if name in ("message", ""):
        # The data names its type too, should a proxy drop the `event:` lines.
        name = r.opt_str("type") or name
    seq = r.opt_int("sequence_number") or 0
    if name == "error":
        if not isinstance(value, Mapping):
            raise ProtocolError("error event: expected an object")
        # The event is the OpenAI error object itself; its status follows from the code.
        return ResponseErrorEvent(
            ApiError.from_problem({"error": value}, request_id=request_id, rate_limit=rate_limit),
            seq,
        )
    if name in _LIFECYCLE:
        resp = Response.from_json(r.obj("response"), request_id, rate_limit)
        return ResponseLifecycleEvent(cast(LifecycleType, name), resp, seq)
    if name in _ITEMS:
        return ResponseItemEvent(
            cast(ItemType, name),
            r.integer("output_index"),
            _item(r.obj("item")),
            seq,
        )
    index = r.opt_int("content_index")
    if index is None:
        index = r.opt_int("summary_index") or 0
    if name in _PARTS:
        return ResponsePartEvent(
            cast(PartType, name),
            r.string("item_id"),
            r.integer("output_index"),
            index,
            ResponseTextPart.from_json(r.obj("part")),
            seq,
        )
    if name in _DELTAS:
        return ResponseTextDeltaEvent(
            cast(DeltaType, name),
            r.string("item_id"),
            r.integer("output_index"),
            index,
            r.string("delta"),
            seq,
        )
    if name in _DONES:
        return ResponseTextDoneEvent(
            cast(DoneType, name),
            r.string("item_id"),
            r.integer("output_index"),
            index,
            r.string("text"),
            seq,
        )
    return None
