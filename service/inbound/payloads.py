"""Reading the JSON a relay posts to a webhook: anyone can post anything there, so each value
is checked for the type it must have before it is used, and whatever is not as documented is a
`MalformedPayload` (answered 400, or 401 while the call is not yet authenticated).

The body is capped before it is read (`max_request_body_bytes`); what is left to guard against
is a body small enough but nested deep enough to exhaust the parser's recursion."""

import json
from typing import Any

from service.errors import PaperwireError

# Keys and ids a relay sends are short; one longer than this is not theirs.
MAX_ID_CHARS = 200


class MalformedPayload(PaperwireError):
    """A webhook body that is not the JSON its relay documents."""


def load_object(body: bytes | str) -> dict[str, Any]:
    """The JSON object in `body`."""
    try:
        value = json.loads(body)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise MalformedPayload("not JSON") from exc
    return as_object(value, "the body")


def as_object(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedPayload(f"{what} is not a JSON object")
    return value


def object_field(parent: dict[str, Any], key: str) -> dict[str, Any]:
    """`parent[key]`, an object; an empty one when it is missing or null."""
    value = parent.get(key)
    return {} if value is None else as_object(value, key)


def list_field(parent: dict[str, Any], key: str) -> list[Any]:
    """`parent[key]`, a list; an empty one when it is missing or null."""
    value = parent.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise MalformedPayload(f"{key} is not a list")
    return value


def text_field(parent: dict[str, Any], key: str) -> str:
    """`parent[key]`, a string; "" when it is missing or null."""
    value = parent.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise MalformedPayload(f"{key} is not a string")
    return value


def id_field(parent: dict[str, Any], key: str) -> str:
    """`parent[key]`, an id given as a string or an integer: required, and short."""
    value = parent.get(key)
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise MalformedPayload(f"{key} is missing")
    text = str(value)
    if not text or len(text) > MAX_ID_CHARS:
        raise MalformedPayload(f"{key} is not an id")
    return text
