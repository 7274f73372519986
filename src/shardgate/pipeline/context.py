"""The typed per-request state that stages read and fill in."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request

from shardgate.safety.policy import SafetyPolicy
from shardgate.safety.redact import Redaction
from shardgate.store.records import Principal

__all__ = ["RequestContext"]


@dataclass
class RequestContext:
    request: Request
    route: str  # a stable name such as "chat.completions", used in metrics and logs
    wire_model: type[BaseModel] | None = None
    access: str = ""  # what the route requires: an endpoint scope or an admin level
    request_id: str = field(default_factory=lambda: os.urandom(12).hex())
    started: float = field(default_factory=time.perf_counter)

    body: bytes = b""
    payload: dict[str, Any] = field(default_factory=dict)  # the JSON body, as forwarded
    parsed: BaseModel | None = None  # the same, validated
    principal: Principal | None = None

    model: str | None = None  # set once the model is known to exist
    stream: bool = False
    shard: str | None = None
    first_token_at: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0

    # Set by the content filter for the safety monitor: the tenant's policy, and the
    # placeholders to put back into the answer (None: nothing to restore).
    safety_policy: SafetyPolicy | None = None
    redaction: Redaction | None = None
