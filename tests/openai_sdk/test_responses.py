"""`client.responses.create`, whole and streamed, against the gateway and its simulator."""

import openai
import pytest


def test_responses_create_whole(client):
    r = client.responses.create(
        model="affine-winner",
        input="Is 61 prime?",
        instructions="Answer briefly.",
        max_output_tokens=200,
        reasoning={"effort": "low"},
    )
    assert r.status == "completed"
    kinds = [item.type for item in r.output]
    assert kinds == ["reasoning", "message"]
    assert r.output[0].content[0].text, "the model's reasoning arrives"
    assert r.output_text, "and so does the answer"
    assert r.usage.output_tokens > 0
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    assert (r.model_extra or {})["cost"]["rao"] > 0


def test_responses_create_streamed(client):
    events = list(
        client.responses.create(
            model="affine-winner",
            input=[{"role": "user", "content": [{"type": "input_text", "text": "Is 61 prime?"}]}],
            max_output_tokens=200,
            stream=True,
        )
    )
    types = [e.type for e in events]
    assert types[0] == "response.created"
    assert types[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    reasoning = "".join(e.delta for e in events if e.type == "response.reasoning_text.delta")
    output = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert reasoning and output
    final = events[-1].response
    assert final.output_text == output
    assert final.usage.output_tokens > 0


def test_stateful_features_are_refused(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model="affine-winner", input="x", previous_response_id="resp_1")
    assert e.value.code == "unsupported_parameter"
    assert "previous_response_id" in e.value.message


def test_with_raw_response_reads_the_ratelimit_headers_on_responses(client):
    raw = client.responses.with_raw_response.create(model="affine-winner", input="hi", max_output_tokens=40)
    assert raw.parse().output_text is not None
    assert int(raw.headers["x-ratelimit-limit-requests"]) > 0
    assert raw.headers["x-ratelimit-reset-tokens"].endswith("s")
