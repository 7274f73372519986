"""Turning a request body into a validated wire model, or a clear 400."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from shardgate.errors import InvalidRequest

__all__ = ["parse_json", "validate"]

M = TypeVar("M", bound=BaseModel)


def parse_json(body: bytes) -> dict[str, Any]:
    if not body:
        raise InvalidRequest("the request body is empty; expected a JSON object")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise InvalidRequest("the request body must be a JSON object")
    return data


def validate(model: type[M], data: dict[str, Any]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = _most_relevant(exc)
        param = ".".join(str(p) for p in err["loc"]) or None
        message = err["msg"].removeprefix("Value error, ")
        raise InvalidRequest(f"{param}: {message}" if param else message, param=param) from None


def _most_relevant(exc: ValidationError) -> Any:
    # For a union field pydantic reports one error per member; report the first
    # location and drop the union member tags (e.g. "str", "list[str]") from it.
    err = exc.errors()[0]
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p in _TAGS)))
    return {**err, "loc": loc}


_TAGS = {"str", "int", "float", "bool", "list", "dict", "function-after", "function-before"}
