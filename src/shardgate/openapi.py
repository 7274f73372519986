"""The gateway's operations, declared once: the app builds its routes from them, and the
OpenAPI document (``GET /openapi.json``) is generated from the same list."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from shardgate.pipeline.base import Handler

__all__ = ["Operation", "openapi_document"]


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    name: str  # a stable name for metrics and logs, e.g. "admin.keys.create"
    handler: Handler
    access: str  # an endpoint scope ("chat") or an admin level ("admin:write")
    summary: str
    request: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    tag: str = "v1"


_ERROR = {"$ref": "#/components/schemas/Error"}
_ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
            "required": ["message", "type"],
        }
    },
}


def openapi_document(operations: Sequence[Operation], version: str) -> dict[str, Any]:
    models = {m for op in operations for m in (op.request, op.response) if m is not None}
    refs, schemas = models_json_schema(
        [(m, "validation") for m in sorted(models, key=lambda m: m.__name__)],
        ref_template="#/components/schemas/{model}",
    )
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        entry: dict[str, Any] = {
            "operationId": op.name,
            "summary": op.summary,
            "tags": [op.tag],
            "description": f"Requires: {op.access}.",
            "responses": {
                "200": _body(op.response, refs, "OK"),
                **{str(s): _error(d) for s, d in _ERRORS.items()},
            },
        }
        if op.request is not None:
            entry["requestBody"] = {"required": True, **_body(op.request, refs, "")}
        parameters = [
            {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
            for p in _path_parameters(op.path)
        ]
        if parameters:
            entry["parameters"] = parameters
        paths.setdefault(op.path, {})[op.method.lower()] = entry
    components = {**schemas.get("$defs", {}), "Error": _ERROR_SCHEMA}
    return {
        "openapi": "3.1.0",
        "info": {"title": "shardgate", "version": version},
        "components": {
            "schemas": components,
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"apiKey": []}],
        "paths": paths,
    }


_ERRORS = {
    400: "Invalid request",
    401: "Missing or invalid API key",
    403: "The key's role or scopes do not allow this",
    404: "Not found (or not visible to this key)",
}


def _body(model: type[BaseModel] | None, refs: Any, description: str) -> dict[str, Any]:
    schema = refs[(model, "validation")] if model is not None else {"type": "object"}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR}}}


def _path_parameters(path: str) -> list[str]:
    return [part[1:-1].split(":")[0] for part in path.split("/") if part.startswith("{")]
