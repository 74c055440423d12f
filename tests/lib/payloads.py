"""The payload contracts of proto/nats/*.schema.json, for asserting that
every message a test receives is valid."""
import json
from functools import lru_cache

import jsonschema

from harness import ROOT


@lru_cache(maxsize=None)
def _validator(name):
    schema = json.loads((ROOT / "proto" / "nats" / f"{name}.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def valid(name, message):
    """The message's JSON, after checking it against schema `name`."""
    payload = message if isinstance(message, dict) else json.loads(message)
    _validator(name).validate(payload)
    return payload


def health(client, subject="cim.leaf.leaf-01.health", data=b""):
    """The health answer on `subject`, checked against its schema."""
    return valid("health", client.request(subject, data).data)
