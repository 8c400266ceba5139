"""Reasoning controls through the official SDK's chat completions."""

MESSAGES = [{"role": "user", "content": "Is 61 prime?"}]


def _reasoning(message):
    # Not a field of the SDK's typed message; pydantic keeps it as an extra.
    return (message.model_extra or {}).get("reasoning_content")


def test_reasoning_content_is_kept_and_effort_reaches_the_provider(client):
    low = client.chat.completions.create(
        model="affine-winner", messages=MESSAGES, max_tokens=60, reasoning_effort="low"
    )
    assert _reasoning(low.choices[0].message), "thinking on: the model's reasoning arrives"
    # `none` is the provider's thinking switch turned off: the simulator then answers without
    # reasoning, which shows the mapping reached it.
    none = client.chat.completions.create(
        model="affine-winner", messages=MESSAGES, max_tokens=60, reasoning_effort="none"
    )
    assert _reasoning(none.choices[0].message) is None
    assert none.choices[0].message.content


def test_a_multi_turn_chat_sends_reasoning_content_back(client):
    first = client.chat.completions.create(model="affine-winner", messages=MESSAGES, max_tokens=60)
    m = first.choices[0].message
    history = MESSAGES + [
        {"role": "assistant", "content": m.content, "reasoning_content": _reasoning(m)},
        {"role": "user", "content": "And 2^61 - 1?"},
    ]
    second = client.chat.completions.create(model="affine-winner", messages=history, max_tokens=60)
    assert second.choices[0].message.content


def test_include_reasoning_false_is_honoured_whole_and_streamed(client):
    whole = client.chat.completions.create(
        model="affine-winner",
        messages=MESSAGES,
        max_tokens=60,
        extra_body={"include_reasoning": False},
    )
    assert _reasoning(whole.choices[0].message) is None
    assert whole.choices[0].message.content
    chunks = list(
        client.chat.completions.create(
            model="affine-winner",
            messages=MESSAGES,
            max_tokens=60,
            stream=True,
            extra_body={"reasoning": {"exclude": True}},
        )
    )
    assert chunks
    assert not any(
        (c.delta.model_extra or {}).get("reasoning_content") for ch in chunks for c in ch.choices
    )
    assert "".join(c.delta.content or "" for ch in chunks for c in ch.choices)
