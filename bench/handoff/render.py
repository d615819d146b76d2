#!/usr/bin/env python3
"""Reference renderer for the medforge handoff templates (the Rust exporter must do the same).

    python render.py TEMPLATE VALUES.json OUT

Rules
- A placeholder is `{name}` with name matching [a-z_][a-z0-9_]*. Substitute in ONE pass over the template
  (regex replace_all with a closure), so substituted values are never re-scanned. Do NOT use a format!-style
  engine: the templates contain Jinja `{{ }}` / `{% %}` and Python dict braces that must pass through untouched.
- *.py.tmpl: each value is written as a Python literal: str -> JSON string (valid Python), bool -> True/False,
  null -> None, numbers as is, lists/objects recursively.
- *.yml.tmpl / *.yaml.tmpl: each value is written as JSON (a valid YAML flow scalar/sequence); null -> null.
- YAML templates may hold conditional blocks: a line `# @if NAME` ... a line `# @endif`. The block is kept
  when VALUES[NAME] is truthy and dropped otherwise; the marker lines are always removed. Blocks don't nest.
- Every placeholder in the template must have a value; unused values are fine (one value map serves every
  template).
"""
import json
import re
import sys

PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


def py_literal(v):
    if v is None:
        return "None"
    if isinstance(v, bool):
        return "True" if v else "False"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(py_literal(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(json.dumps(k) + ": " + py_literal(x) for k, x in v.items()) + "}"
    raise TypeError(type(v))


def yaml_literal(v):
    return json.dumps(v)


def apply_conditionals(text, values):
    out, keep, in_block = [], True, False
    for line in text.splitlines(keepends=True):
        s = line.strip()
        m = re.fullmatch(r"# @if ([a-z_][a-z0-9_]*)", s)
        if m:
            if in_block:
                raise SystemExit("nested # @if")
            if m.group(1) not in values:
                raise SystemExit("no value for condition %s" % m.group(1))
            in_block, keep = True, bool(values[m.group(1)])
            continue
        if s == "# @endif":
            in_block, keep = False, True
            continue
        if keep:
            out.append(line)
    if in_block:
        raise SystemExit("unterminated # @if")
    return "".join(out)


def render(template_path, values):
    text = open(template_path, encoding="utf-8").read()
    is_py = template_path.endswith(".py.tmpl")
    if not is_py:
        text = apply_conditionals(text, values)
    wanted = set(PLACEHOLDER.findall(text))
    missing = sorted(wanted - set(values))
    if missing:
        raise SystemExit("%s: no value for %s" % (template_path, missing))
    lit = py_literal if is_py else yaml_literal
    # One pass: substituted values are never re-scanned (a Jinja value may itself contain `{eos_token}`).
    return PLACEHOLDER.sub(lambda m: lit(values[m.group(1)]), text)


def main():
    template, values_path, out = sys.argv[1:4]
    values = json.load(open(values_path, encoding="utf-8"))
    text = render(template, values)
    with open(out, "w", encoding="utf-8") as f:
        f.write(text)


if __name__ == "__main__":
    main()
