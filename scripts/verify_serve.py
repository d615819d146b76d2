"""Check `medforge serve` with the official `openai` Python client: models, non-streaming and streaming chat,
completions. Usage: verify_serve.py BASE_URL MODEL_ID API_KEY"""
import sys

import openai

base, model, key = sys.argv[1:4]
client = openai.OpenAI(base_url=base, api_key=key, max_retries=0, timeout=120)

ids = [m.id for m in client.models.list().data]
assert model in ids, ids

q = [{"role": "user", "content": "What organ pumps blood through the body? Answer in one sentence."}]
r = client.chat.completions.create(model=model, messages=q, max_tokens=40, temperature=0)
text = r.choices[0].message.content
assert text and text.strip(), r
assert r.usage.completion_tokens > 0 and r.choices[0].finish_reason in ("stop", "length"), r
print("chat:", repr(text))

parts = []
usage = None
for chunk in client.chat.completions.create(model=model, messages=q, max_tokens=40, temperature=0, stream=True,
                                            stream_options={"include_usage": True}):
    if chunk.usage:
        usage = chunk.usage
    for c in chunk.choices:
        if c.delta.content:
            parts.append(c.delta.content)
streamed = "".join(parts)
assert streamed.strip(), "empty streamed answer"
assert streamed == text, (streamed, text)
assert usage and usage.completion_tokens > 0, usage
print("stream:", repr(streamed))

c = client.completions.create(model=model, prompt="The capital of France is Paris. The capital of Germany is",
                              max_tokens=3, temperature=0)
assert c.choices[0].text.startswith(" Berlin"), c
print("completion:", repr(c.choices[0].text))

try:
    client.chat.completions.create(model="no-such-model", messages=q, max_tokens=5)
    raise SystemExit("unknown model was accepted")
except openai.NotFoundError as e:
    assert e.body and "message" in e.body, e.body
try:
    client.chat.completions.create(model=model, messages=q, max_tokens=10**7)
    raise SystemExit("max_tokens 1e7 was accepted")
except openai.BadRequestError as e:
    assert e.body and "message" in e.body, e.body
print("verify_serve: ok")
