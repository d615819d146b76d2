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

# Structured output: response_format json_schema (strict) returns JSON valid against the schema; vLLM's extra
# parameters constrain too; a schema or grammar that does not compile is a 400.
import json
import jsonschema

schema = {"type": "object", "properties": {
    "specialty": {"type": "string", "enum": ["cardiology", "neurology", "nephrology", "other"]},
    "urgent": {"type": "boolean"},
    "reason": {"type": "string", "maxLength": 120}},
    "required": ["specialty", "urgent", "reason"], "additionalProperties": False}
case = [{"role": "user", "content": "A 58-year-old man has crushing chest pain radiating to the left arm. "
         "Which specialty, is it urgent, and why? Answer as JSON."}]
for temperature in (0, 0.8):
    r = client.chat.completions.create(model=model, messages=case, max_tokens=120, temperature=temperature, seed=3,
        response_format={"type": "json_schema", "json_schema": {"name": "triage", "schema": schema, "strict": True}})
    doc = json.loads(r.choices[0].message.content)
    jsonschema.validate(doc, schema)
    print("json_schema:", doc)
r = client.chat.completions.create(model=model, messages=case, max_tokens=8, temperature=0,
                                   extra_body={"guided_choice": ["cardiology", "neurology", "other"]})
assert r.choices[0].message.content in ("cardiology", "neurology", "other"), r
print("guided_choice:", r.choices[0].message.content)
for bad in ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nonsense"}}}},
            {"extra_body": {"guided_grammar": "start: undefined_rule"}}):
    try:
        client.chat.completions.create(model=model, messages=case, max_tokens=5, **bad)
        raise SystemExit(f"accepted {bad}")
    except openai.BadRequestError as e:
        assert e.body and "does not compile" in e.body["message"], e.body
print("verify_serve: ok")
