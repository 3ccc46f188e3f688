#!/usr/bin/env python3
"""Writes the JSON schema of the guardrail's config (the pydantic model `guardrail_server.config.Config`) into the
chart's values.schema.json, as the schema of the `config:` value, so `helm template`/`helm install` refuse a typo
(`config.server.hots`, `config.invariants.entailmnt`, an unknown option of an invariant) instead of rendering a
ConfigMap the pod crash-loops on.

    python deploy/tools/config_schema.py            # rewrite helm/guardrail-sidecar/values.schema.json
    python deploy/tools/config_schema.py --check    # exit 1 if the committed schema is not what the model gives

What pydantic's schema cannot say, added here: inputs its "before" validators accept (a secret or a judge as a plain
string, one token instead of a list, an option's old name), and one schema per registered invariant for its
`options` (the model checks them in a validator, so pydantic sees `options: dict`). What the schema does not check —
files that must exist, cross-field rules — the server still checks at start-up, naming the key.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
VALUES_SCHEMA = ROOT / "helm" / "guardrail-sidecar" / "values.schema.json"
PREFIX = "guardrailConfig."  # definitions this script owns in values.schema.json
NOTE = ("Generated from guardrail_server.config.Config by deploy/tools/config_schema.py (make chart-schema): edit the "
        "model, not this. The guardrail's own config file (config.example.yaml lists every key).")
# Models whose "before" validator also takes a plain string (`token: "..."`, `judges: ["nli:model"]`).
STRING_FORMS = {"Secret": "the secret inline", "JudgeSpec": "kind[:model], e.g. nli:minilm-groundedness"}

sys.path.insert(0, str(ROOT))


def _clean(node: Any) -> Any:
    """A schema without pydantic's titles and defaults (noise here; the server applies defaults); maps of names
    (`properties`, `definitions`) keep every name, even a field called `title`."""
    if isinstance(node, list):
        return [_clean(v) for v in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("title", "default") or (key == "writeOnly") or (key == "format" and value == "password"):
            continue
        if key in ("properties", "definitions", "$defs", "patternProperties") and isinstance(value, dict):
            out[key] = {name: _clean(sub) for name, sub in value.items()}
        else:
            out[key] = _clean(value)
    return out


def _model_schema(model: Any, defs: dict[str, Any]) -> dict[str, Any]:
    """`model`'s validation schema with its $defs moved into `defs` (prefixed) and refs pointing there."""
    schema = model.model_json_schema(mode="validation", ref_template="#/definitions/" + PREFIX + "{model}")
    for name, body in schema.pop("$defs", {}).items():
        defs[PREFIX + name] = body
    _add_alias_choices(model, schema)
    return schema


def _add_alias_choices(model: Any, schema: dict[str, Any]) -> None:
    """Fields with AliasChoices (an option's old name) accept every name."""
    from pydantic import AliasChoices

    props = schema.get("properties", {})
    for name, field in model.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            first = next((c for c in alias.choices if isinstance(c, str) and c in props), name)
            for choice in alias.choices:
                if isinstance(choice, str) and choice not in props:
                    props[choice] = {**copy.deepcopy(props[first]), "description": f"old name of {first}"}


def config_schema() -> tuple[dict[str, Any], dict[str, Any]]:
    """(the schema of `config:`, the definitions it refers to)."""
    from guardrail_invariants.registry import REGISTRY, options_model
    from guardrail_server.config import Config

    defs: dict[str, Any] = {}
    root = _model_schema(Config, defs)
    auth = defs[PREFIX + "AuthConfig"]["properties"]
    secret = {"$ref": f"#/definitions/{PREFIX}Secret"}
    auth["tokens"] = {**auth["tokens"], "anyOf": [secret, {"type": "array", "items": secret}]}
    auth["tokens"].pop("type", None), auth["tokens"].pop("items", None)
    keys = auth["api_keys"]
    keys["additionalProperties"] = {"anyOf": [secret, {"type": "array", "items": secret}]}

    # invariants: one entry per registered invariant (an unknown name is refused), its options by its own model
    policy = defs.pop(PREFIX + "InvariantPolicy")
    invariants: dict[str, Any] = {}
    for name in sorted(REGISTRY):
        body = copy.deepcopy(policy)
        options = _model_schema(options_model(name), defs)
        body["properties"]["options"] = {**options, "description": f"options of {name}"}
        invariants[name] = body
    root["properties"]["invariants"] = {
        "type": "object", "description": root["properties"]["invariants"].get("description", "invariant policies"),
        "properties": invariants, "additionalProperties": False,
    }
    for name, hint in STRING_FORMS.items():
        key = PREFIX + name
        defs[key] = {"anyOf": [{"type": "string", "description": hint}, defs[key]]}
    root["description"] = NOTE
    root = _clean(root)
    defs = {k: _clean(v) for k, v in sorted(defs.items())}
    return root, defs


def updated_values_schema(current: dict[str, Any]) -> dict[str, Any]:
    root, defs = config_schema()
    out = copy.deepcopy(current)
    out["properties"]["config"] = root
    kept = {k: v for k, v in out.get("definitions", {}).items() if not k.startswith(PREFIX)}
    out["definitions"] = {**kept, **defs}
    return out


def dumps(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="only compare; exit 1 when the committed file differs")
    args = ap.parse_args(argv)
    text = dumps(updated_values_schema(json.loads(VALUES_SCHEMA.read_text())))
    if args.check:
        if VALUES_SCHEMA.read_text() != text:
            print(f"{VALUES_SCHEMA} is out of date: run `make chart-schema`", file=sys.stderr)
            return 1
        return 0
    VALUES_SCHEMA.write_text(text)
    print(f"wrote {VALUES_SCHEMA.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
