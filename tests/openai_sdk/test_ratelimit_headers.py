"""OpenAI's `x-ratelimit-*` fields, as the official SDK's `with_raw_response` reads them."""

import re


def _ietf(value: str, name: str) -> dict:
    member = next(m for m in value.split(", ") if m.startswith(f'"{name}";'))
    return {k: int(v) for k, v in (p.split("=") for p in member.split(";")[1:] if "=" in p)}


def _go_secs(d: str) -> int:
    m = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(\d+)s", d)
    assert m, f"not a whole-second Go duration: {d}"
    h, mi, s = (int(x or 0) for x in m.groups())
    return h * 3600 + mi * 60 + s


def test_with_raw_response_reads_the_ratelimit_headers(client):
    raw = client.chat.completions.with_raw_response.create(
        model="affine-winner",
        messages=[{"role": "user", "content": "2+2?"}],
        max_tokens=40,
    )
    completion = raw.parse()
    assert completion.choices[0].message.content
    h = raw.headers
    for kind, policy in (("requests", "rpm"), ("tokens", "tpm")):
        q = _ietf(h["ratelimit-policy"], policy)["q"]
        rt = _ietf(h["ratelimit"], policy)
        assert int(h[f"x-ratelimit-limit-{kind}"]) == q
        assert int(h[f"x-ratelimit-remaining-{kind}"]) == rt["r"]
        assert _go_secs(h[f"x-ratelimit-reset-{kind}"]) == rt["t"]
    assert int(h["x-ratelimit-remaining-requests"]) < int(h["x-ratelimit-limit-requests"])
