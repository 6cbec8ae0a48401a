"""Loads schemas/ and validates gateway output against it (JSON Schema 2020-12)."""
from __future__ import annotations

import json
import pathlib

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

SCHEMA_DIR = pathlib.Path(__file__).resolve().parents[2] / "schemas"


def load_registry(schema_dir: pathlib.Path = SCHEMA_DIR):
    resources = []
    by_path = {}
    for path in sorted(schema_dir.rglob("*.json")):
        contents = json.loads(path.read_text())
        res = Resource.from_contents(contents)
        resources.append((contents["$id"], res))
        by_path[path.relative_to(schema_dir).as_posix()] = contents
    return Registry().with_resources(resources), by_path


def validator_for(name: str, schema_dir: pathlib.Path = SCHEMA_DIR) -> Draft202012Validator:
    registry, by_path = load_registry(schema_dir)
    schema = by_path[name]
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, registry=registry,
                                format_checker=Draft202012Validator.FORMAT_CHECKER)


def describe(validator: Draft202012Validator, instance) -> str | None:
    """None when valid, else a short description of the first problems."""
    errors = list(validator.iter_errors(instance))
    if not errors:
        return None
    parts = []
    for err in errors[:3]:
        detail = err.message
        # oneOf failures hide the useful part in the context; pick the branch
        # whose 'type' const matched.
        if err.context:
            typed = [c for c in err.context
                     if not (c.validator == "const" and list(c.relative_schema_path)[-2:-1] == ["type"])]
            best = sorted(typed or err.context, key=lambda c: -len(c.absolute_path))[:2]
            detail += " | " + "; ".join(
                f"{'/'.join(map(str, c.absolute_path)) or '.'}: {c.message}" for c in best)
        parts.append(detail[:300])
    return " || ".join(parts)


# --- batch validation (runs in a worker process: jsonschema is slow, ~1 ms/frame) ---

_VALIDATORS: dict = {}
_BY_TYPE: dict = {}


def _validator(name: str) -> Draft202012Validator:
    if name not in _VALIDATORS:
        _VALIDATORS[name] = validator_for(name)
    return _VALIDATORS[name]


def explain_frame(frame) -> str:
    """Detail for an invalid server frame: errors against its own type's schema."""
    t = frame.get("type") if isinstance(frame, dict) else None
    if isinstance(t, str) and (SCHEMA_DIR / "server" / f"{t}.json").exists():
        errs = list(_validator(f"server/{t}.json").iter_errors(frame))
        if errs:
            return "; ".join(
                f"{'/'.join(map(str, e.absolute_path)) or '.'}: {e.message}"[:200] for e in errs[:3])
    return (describe(_validator("server-frame.json"), frame) or "")[:300]


def validate_batch(batch: list) -> list:
    """batch: [(kind, payload)] with kind 'frame' (payload = frame text) or 'headers'
    (payload = JSON text of the header map). Returns [(index, problem)]."""
    frames = _validator("server-frame.json")
    headers = _validator("kafka-record-headers.json")
    out = []
    for i, (kind, payload) in enumerate(batch):
        try:
            inst = json.loads(payload)
        except ValueError as e:
            out.append((i, f"not JSON: {e}"))
            continue
        v = frames if kind == "frame" else headers
        if not v.is_valid(inst):
            if kind == "frame":
                out.append((i, explain_frame(inst)))
            else:
                out.append((i, describe(v, inst) or "invalid"))
    return out
