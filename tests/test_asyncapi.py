"""schemas/asyncapi.yaml, the AsyncAPI 3.0 contract of the Kafka topics: valid by the AsyncAPI project's own
published JSON Schema (npm @asyncapi/specs, which ops/setup installs under var/node), its Kafka bindings valid
by the project's binding schemas, every $ref resolved, and nothing the code writes or reads left out of it.
A broken copy fails, so the check can fail. Needs no stack.
"""
import copy
import glob
import json
import os
import re

import jsonschema
import pytest
import yaml

from conftest import ROOT

SPECS = os.path.join(ROOT, "var", "node", "node_modules", "@asyncapi", "specs")
DOC_PATH = os.path.join(ROOT, "schemas", "asyncapi.yaml")


def load_doc():
    with open(DOC_PATH) as f:
        return yaml.safe_load(f)


def spec_schema(name):
    path = os.path.join(SPECS, name)
    # Not a skip: ops/setup installs it, and a machine without it must fail here.
    assert os.path.exists(path), f"{path} is missing: run ops/setup (npm install of @asyncapi/specs)"
    with open(path) as f:
        return json.load(f)


def resolve_pointer(node, pointer):
    for part in pointer.lstrip("/").split("/") if pointer.strip("/") else []:
        part = part.replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


class LocalRefResolver(jsonschema.RefResolver):
    """References are resolved from the store (the definitions of the package's bundled 3.0.0.json, by their
    http://asyncapi.com/definitions/3.0.0/... ids) and within the schema: never over the network. Debian
    12's jsonschema 4.10 looks a reference up among the subschemas with an "$id" first, and stumbles on the
    AsyncAPI schema's properties named "$id" (a dict there, not a URI): that lookup is left out."""

    def _find_in_subschemas(self, url):
        return None

    def resolve_remote(self, uri):
        raise AssertionError(f"{uri} is not in @asyncapi/specs' bundled definitions")


def validator(schema):
    store = {k: v for k, v in spec_schema("schemas/3.0.0.json")["definitions"].items()}
    return jsonschema.Draft7Validator(schema, resolver=LocalRefResolver.from_schema(schema, store=store))


def problems(doc):
    """Every reason the document is not a valid AsyncAPI 3.0.0 contract of ours (empty when it is)."""
    out = []
    v = validator(spec_schema("schemas/3.0.0-without-$id.json"))
    out += [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in v.iter_errors(doc)]
    # Kafka bindings, by the binding schemas the AsyncAPI parser applies.
    bindings = {"channel": [], "operation": [], "message": []}
    for c in (doc.get("channels") or {}).values():
        if isinstance(c, dict) and "kafka" in (c.get("bindings") or {}):
            bindings["channel"].append(c["bindings"]["kafka"])
    for o in (doc.get("operations") or {}).values():
        if isinstance(o, dict) and "kafka" in (o.get("bindings") or {}):
            bindings["operation"].append(o["bindings"]["kafka"])
    for b in ((doc.get("components") or {}).get("messageBindings") or {}).values():
        if isinstance(b, dict) and "kafka" in b:
            bindings["message"].append(b["kafka"])
    for kind, items in bindings.items():
        bv = validator(spec_schema(f"bindings/kafka/0.5.0/{kind}.json"))
        for b in items:
            out += [f"kafka {kind} binding: {e.message}" for e in bv.iter_errors(b)]
    # Every $ref resolves: within the document, or to a schema file of schemas/ (and the fragment in it).
    def walk(node):
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                target, _, frag = ref.partition("#")
                try:
                    if target:
                        path = os.path.normpath(os.path.join(os.path.dirname(DOC_PATH), target))
                        assert path.startswith(os.path.join(ROOT, "schemas") + os.sep), "outside schemas/"
                        with open(path) as f:
                            resolve_pointer(json.load(f), frag)
                    else:
                        resolve_pointer(doc, frag)
                except (AssertionError, OSError, KeyError, IndexError, ValueError, TypeError) as e:
                    out.append(f"$ref {ref} does not resolve ({e!r})")
            for x in node.values():
                walk(x)
        elif isinstance(node, list):
            for x in node:
                walk(x)
    walk(doc)
    return out


def test_the_document_is_valid_asyncapi_3():
    doc = load_doc()
    assert doc["asyncapi"] == "3.0.0"
    assert problems(doc) == []


def _set(doc, path, value):
    node = doc
    for p in path[:-1]:
        node = node[p]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value


@pytest.mark.parametrize("path, value", [
    (("info",), KeyError),                                               # required
    (("asyncapi",), "2.6.0"),                                            # not 3.0.0
    (("channels", "commands", "address"), 12),                          # not a string
    (("operations", "applyCommands", "action"), "consume"),             # send or receive only
    (("operations", "applyCommands", "bindings", "kafka", "groupId"), 7),  # a binding schema refuses it
    (("channels", "results", "messages", "Result", "$ref"), "#/components/messages/Nope"),   # dangling
    (("components", "messages", "Result", "payload", "$ref"), "./missing.schema.json"),      # no such file
    (("channels", "dlq", "colour"), "red"),                             # unknown field
])
def test_a_broken_copy_fails(path, value):
    doc = copy.deepcopy(load_doc())
    _set(doc, path, value)
    assert problems(doc), f"a copy with {path} = {value!r} passed"


def _src(*globs):
    text = ""
    for g in globs:
        for p in sorted(glob.glob(os.path.join(ROOT, g), recursive=True)):
            with open(p) as f:
                text += f.read()
    return text


def test_every_topic_group_message_type_and_header_of_the_code_is_in_the_document():
    doc = load_doc()
    conf = _src("lib/core/conf.c")
    topics = dict(re.findall(r'\{"topic\.(\w+)", "([^"]+)"', conf))
    assert set(topics) == {"commands", "events", "results", "mail", "dlq"}, topics
    addresses = {c["address"]: c for c in doc["channels"].values()}
    assert set(addresses) == set(topics.values())
    parts = dict(re.findall(r'\{"topics\.partitions\.(\w+)", "(\d+)"', conf))
    for name, address in topics.items():
        assert addresses[address]["bindings"]["kafka"]["topic"] == address
        assert addresses[address]["bindings"]["kafka"]["partitions"] == int(parts[name]), name

    groups = set(re.findall(r'\{"group\.\w+", "([^"]+)"', conf))
    assert groups, "no group.* keys found"
    doc_groups = {g for o in doc["operations"].values()
                  for g in (o.get("bindings", {}).get("kafka", {}).get("groupId", {}).get("enum") or [])}
    assert doc_groups == groups

    def messages_of(address):
        return {ref["$ref"].rsplit("/", 1)[1] for ref in addresses[address]["messages"].values()}

    # Commands: the parser's table.
    cmd_types = set(re.findall(r'\[CMD_\w+\] = \{\s*"(\w+)"', _src("lib/msg/cmd.c")))
    assert len(cmd_types) == 11, cmd_types
    assert messages_of(topics["commands"]) == cmd_types | {"BinaryModeCommand"}
    # Events: every name the code emits (domain, outbox, mailer, expiry worker).
    svc = _src("lib/svc/*.c")
    emitted = set(re.findall(r'(?:dom_emit|outbox_event)\([^;]*?"([A-Z]\w+)"', svc, re.S))
    emitted |= set(re.findall(r'add_event\([^;]*?"([A-Z]\w+)"', svc, re.S))
    emitted |= set(re.findall(r'"raikoo\.event\.([A-Z]\w+)\.v1"', svc))
    assert {"CommandRejected", "InvitationExpired", "InvitationEmailSent", "OrganizationCreated"} <= emitted
    assert messages_of(topics["events"]) == emitted
    assert messages_of(topics["results"]) == {"Result"} and messages_of(topics["mail"]) == {"InvitationEmail", "InvitationReminder"}
    for name, m in doc["components"]["messages"].items():
        ref = m["payload"].get("$ref", "")
        if ref.startswith("./events/"):
            with open(os.path.join(ROOT, "schemas", ref)) as f:
                assert json.load(f)["properties"]["type"]["const"] == f"raikoo.event.{name}.v1"

    # Headers: the dead-letter headers the worker writes (every one, but the mark of a redacted letter, on every
    # dead letter), the structured-mode mark, the replay header.
    worker = _src("lib/svc/deadletter.c")
    dlq_headers = set(re.findall(r'rd_kafka_header_add\(\*?h, "(raikoo\.dlq\.\w+)"', worker))
    assert {"raikoo.dlq.reason", "raikoo.dlq.origin", "raikoo.dlq.group", "raikoo.dlq.redacted"} <= dlq_headers
    schemas = doc["components"]["schemas"]
    assert set(schemas["DeadLetterHeaders"]["properties"]) == dlq_headers
    assert set(schemas["DeadLetterHeaders"]["required"]) == dlq_headers - {"raikoo.dlq.redacted"}
    mark = re.search(r'#define EVENT_CONTENT_TYPE "([^"]+)"', _src("lib/msg/event.h")).group(1)
    assert doc["defaultContentType"] == mark
    assert schemas["StructuredModeHeaders"]["properties"]["content-type"]["const"] == mark
    assert '"raikoo.replay.of"' in _src("producers/raikoo/dlq.c")
    assert "raikoo.replay.of" in schemas["CommandHeaders"]["properties"]
    # Binary mode: every envelope attribute but data and datacontenttype is a ce_ header.
    envelope = re.search(r'envelope_keys\[\] = \{(.*?)\}', _src("lib/msg/cmd.c"), re.S).group(1)
    attrs = set(re.findall(r'"(\w+)"', envelope)) - {"data", "datacontenttype"}
    assert {h for h in schemas["BinaryModeHeaders"]["properties"] if h.startswith("ce_")} == \
        {f"ce_{a}" for a in attrs}
