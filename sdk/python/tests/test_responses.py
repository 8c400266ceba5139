"""``POST /v1/responses`` against a live gateway (built-in simulator), sync and async, and a
broken stream from a scripted transport."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx
import pytest

from affine_reason import (
    ApiError,
    AsyncClient,
    Client,
    Response,
    ResponseErrorEvent,
    ResponseEvent,
    ResponseLifecycleEvent,
    ResponseMessageItem,
    ResponseReasoningItem,
    ResponseTextDeltaEvent,
)
from conftest import Keys
from gateway import Gateway
from test_live import CREDENTIALS, credentials

MESSAGES = [
    {"role": "developer", "content": "answer in one word"},
    {"role": "user", "content": [{"type": "input_text", "text": "Is 61 prime?"}]},
]


def check_response(r: Response) -> None:
    assert r.status == "completed"
    assert r.id.startswith("resp_")
    assert [type(i) for i in r.output] == [ResponseReasoningItem, ResponseMessageItem]
    reasoning = r.output[0]
    assert isinstance(reasoning, ResponseReasoningItem)
    assert reasoning.content[0].type == "reasoning_text"
    assert r.reasoning_text and r.output_text.strip()
    assert r.usage is not None
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    assert 0 <= r.usage.reasoning_tokens <= r.usage.output_tokens
    assert r.cost is not None
    assert isinstance(r.cost.rao, int) and r.cost.rao > 0
    assert isinstance(r.cost.tao, Decimal) and r.cost.tao * 10**9 == r.cost.rao
    assert r.request_id
    assert r.rate_limit is not None and "rpm" in r.rate_limit


def texts(events: list[ResponseEvent], kind: str) -> str:
    deltas = [e for e in events if isinstance(e, ResponseTextDeltaEvent) and e.type == kind]
    return "".join(e.delta for e in deltas)


def check_stream(events: list[ResponseEvent]) -> Response:
    types = [e.type for e in events]
    assert types[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert types[-1] == "response.completed" and types.count("response.completed") == 1
    assert [e.sequence_number for e in events] == list(range(len(events)))
    last = events[-1]
    assert isinstance(last, ResponseLifecycleEvent)
    done = last.response
    reasoning = texts(events, "response.reasoning_text.delta")
    output = texts(events, "response.output_text.delta")
    assert reasoning and output
    assert done.reasoning_text == reasoning
    assert done.output_text == output
    assert done.usage is not None and done.usage.output_tokens > 0
    assert done.cost is not None and done.cost.rao > 0
    return done


@pytest.mark.parametrize("kind", CREDENTIALS)
def test_responses_whole_and_streamed(gateway: Gateway, keys: Keys, bearer_token: str, kind: str):
    with Client(gateway.url, **credentials(kind, keys, bearer_token)) as client:
        r = client.responses(
            MESSAGES,
            instructions="be brief",
            max_output_tokens=200,
            temperature=0.3,
            top_p=0.9,
            reasoning={"effort": "high"},
            metadata={"case": kind},
        )
        check_response(r)
        assert r.metadata == {"case": kind}
        assert r.data["max_output_tokens"] == 200
        assert r.data["reasoning"]["effort"] == "high"
        with client.responses_stream("Is 61 prime?", max_output_tokens=200) as stream:
            events = list(stream)
        done = check_stream(events)
        assert stream.request_id and done.request_id == stream.request_id
        assert stream.rate_limit is not None and "tpm" in stream.rate_limit


@pytest.mark.parametrize("kind", ["bearer", "btauth", "session"])
async def test_responses_whole_and_streamed_async(
    gateway: Gateway, keys: Keys, bearer_token: str, kind: str
):
    async with AsyncClient(gateway.url, **credentials(kind, keys, bearer_token)) as client:
        check_response(await client.responses("Is 61 prime?", max_output_tokens=200))
        events = [e async for e in client.responses_stream("Is 61 prime?")]
        check_stream(events)


def test_a_summary_streams_as_summary_text(gateway: Gateway, bearer_token: str):
    with Client(gateway.url, token=bearer_token) as client:
        events = list(client.responses_stream("2+2?", reasoning={"summary": "auto"}))
    summary = texts(events, "response.reasoning_summary_text.delta")
    assert summary and not texts(events, "response.reasoning_text.delta")
    assert "response.reasoning_summary_part.added" in [e.type for e in events]
    last = events[-1]
    assert isinstance(last, ResponseLifecycleEvent)
    assert last.response.reasoning_text == summary


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("previous_response_id", "resp_abc"),
        ("store", True),
        ("tools", [{"type": "function", "name": "f", "parameters": {}}]),
    ],
)
def test_stateful_fields_are_refused(gateway: Gateway, bearer_token: str, field: str, value: Any):
    with Client(gateway.url, token=bearer_token) as client:
        with pytest.raises(ApiError) as raised:
            client.responses("x", **{field: value})
        assert raised.value.status == 400
        assert raised.value.code == "unsupported_parameter"
        assert field in raised.value.message
        assert raised.value.request_id
        with pytest.raises(ApiError) as streamed:
            list(client.responses_stream("x", **{field: value}))
        assert streamed.value.code == "unsupported_parameter"


async def test_stateful_fields_are_refused_async(gateway: Gateway, bearer_token: str):
    async with AsyncClient(gateway.url, token=bearer_token) as client:
        with pytest.raises(ApiError) as raised:
            await client.responses("x", store=True)
        assert (raised.value.status, raised.value.code) == (400, "unsupported_parameter")


def _sse(*events: dict[str, Any]) -> bytes:
    out = b""
    for i, e in enumerate(events):
        out += f"event: {e['type']}\ndata: {json.dumps({**e, 'sequence_number': i})}\n\n".encode()
    return out


def _object(status: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": "resp_1",
        "object": "response",
        "created_at": 1,
        "status": status,
        "model": "m",
        "output": [],
        "metadata": {},
        **extra,
    }


BROKEN = _sse(
    {"type": "response.created", "response": _object("in_progress")},
    {
        "type": "response.output_text.delta",
        "item_id": "msg_1",
        "output_index": 0,
        "content_index": 0,
        "delta": "4",
        "logprobs": [],
    },
    {"type": "response.novelty", "x": 1},
    {"type": "error", "code": "upstream_error", "message": "the provider broke", "param": None},
    {
        "type": "response.failed",
        "response": _object("failed", error={"code": "upstream_error", "message": "broke"}),
    },
)


def _scripted(body: bytes) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/responses"
        assert json.loads(request.content)["stream"] is True
        headers = {"content-type": "text/event-stream", "x-request-id": "r9"}
        return httpx.Response(200, content=body, headers=headers)

    return httpx.MockTransport(handle)


def check_broken(events: list[ResponseEvent]) -> None:
    # The unknown event is skipped; the error is the SDK's ApiError, then the stream ends.
    assert [e.type for e in events] == [
        "response.created",
        "response.output_text.delta",
        "error",
        "response.failed",
    ]
    error = events[2]
    assert isinstance(error, ResponseErrorEvent)
    assert (error.error.status, error.code) == (502, "upstream_error")
    assert error.error.message == "the provider broke" and error.error.request_id == "r9"
    failed = events[3]
    assert isinstance(failed, ResponseLifecycleEvent)
    assert failed.response.status == "failed" and failed.response.error is not None


def test_a_broken_stream_yields_the_error_then_response_failed():
    with Client("http://gw.test", token="t", transport=_scripted(BROKEN)) as c:
        check_broken(list(c.responses_stream("x")))


async def test_a_broken_stream_yields_the_error_then_response_failed_async():
    async with AsyncClient("http://gw.test", token="t", transport=_scripted(BROKEN)) as c:
        check_broken([e async for e in c.responses_stream("x")])
