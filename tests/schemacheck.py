"""The JSON Schemas under schemas/: loading them, resolving their $refs among themselves, and choosing the
schema of a message by its CloudEvents type. Shared by test_schemas.py and test_emitted_messages_validate.py.
"""
import json
import os
import re

import jsonschema

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA_DIR = os.path.join(ROOT, "schemas")
BASE_ID = "https://schemas.raikoo.example/"

# Field names that would carry a secret; no event may have one (and no result either).
SECRET_FIELDS = ("code", "password_hash", "sealed_code", "code_hash")


def schema_files():
    """Paths of every schema file, relative to schemas/ ("commands/InviteNewUser.schema.json")."""
    out = []
    for d, _, files in os.walk(SCHEMA_DIR):
        for f in files:
            if f.endswith(".schema.json"):
                out.append(os.path.relpath(os.path.join(d, f), SCHEMA_DIR))
    return sorted(out)


def load(rel):
    with open(os.path.join(SCHEMA_DIR, rel)) as f:
        return json.load(f)


_store = None


def store():
    """Every schema by its $id: the registry the $refs resolve in (nothing is fetched from the network)."""
    global _store
    if _store is None:
        _store = {}
        for rel in schema_files():
            s = load(rel)
            _store[s["$id"]] = s
    return _store


def validator(rel):
    """A Draft 2020-12 validator of one schema file, with its $refs resolved in the local registry."""
    schema = load(rel)
    resolver = jsonschema.RefResolver(base_uri=schema["$id"], referrer=schema, store=store())
    return jsonschema.Draft202012Validator(schema, resolver=resolver)


def schema_for_type(type_):
    """The schema file (relative path) of a message type, or None."""
    if not isinstance(type_, str):
        return None
    m = re.fullmatch(r"raikoo\.(command|event|mail)\.([A-Za-z]+)\.v1", type_)
    if m:
        folder = {"command": "commands", "event": "events", "mail": "mail"}[m.group(1)]
        rel = f"{folder}/{m.group(2)}.schema.json"
        return rel if os.path.exists(os.path.join(SCHEMA_DIR, rel)) else None
    if type_ == "raikoo.result.v1":
        return "result.schema.json"
    return None


_validators = {}


def errors(message):
    """The schema errors of a parsed message (a list of strings; empty when valid)."""
    rel = schema_for_type(message.get("type") if isinstance(message, dict) else None)
    if rel is None:
        return [f"no schema for type {message.get('type') if isinstance(message, dict) else message!r}"]
    if rel not in _validators:
        _validators[rel] = validator(rel)
    return [f"{rel}: {'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
            for e in _validators[rel].iter_errors(message)]
