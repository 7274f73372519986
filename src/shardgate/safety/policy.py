"""What the content filter does with each detector's findings, per tenant.

A ``SafetyPolicy`` names an action per detector for the input (``allow``, ``flag``: record
only, ``redact``: replace spans with placeholders, ``block``: refuse with 400) and for the
output (``allow``, ``flag``, ``block``: end the answer with ``finish_reason
"content_filter"``), plus the tenant's own deny-list. The gateway's settings hold the default
policy; a tenant's override (admin API) is a partial policy merged over it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import regex
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = [
    "SPAN_DETECTORS",
    "Action",
    "InputPolicy",
    "OutputAction",
    "OutputPolicy",
    "PolicyError",
    "SafetyPolicy",
    "merge_policy",
]

Action = Literal["allow", "flag", "redact", "block"]
OutputAction = Literal["allow", "flag", "block"]
# Detectors that find spans, which can be replaced; the others judge a whole text.
SPAN_DETECTORS = frozenset({"pii", "secrets", "deny"})
MAX_DENY_TERMS = 500
MAX_DENY_PATTERNS = 50


class PolicyError(ValueError):
    """An override that does not make a valid policy, with one line per problem."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class InputPolicy(_Frozen):
    pii: Action = "redact"
    secrets: Action = "redact"
    injection: Action = "block"
    harmful: Action = "block"
    toxicity: Action = "flag"
    deny: Action = "block"

    @field_validator("injection", "harmful", "toxicity")
    @classmethod
    def _whole_text(cls, value: Action) -> Action:
        if value == "redact":
            raise ValueError("judges a whole text, so it can allow, flag or block, not redact")
        return value


class OutputPolicy(_Frozen):
    pii: OutputAction = "flag"
    secrets: OutputAction = "block"
    harmful: OutputAction = "block"
    toxicity: OutputAction = "flag"
    deny: OutputAction = "block"


class SafetyPolicy(_Frozen):
    input: InputPolicy = InputPolicy()
    output: OutputPolicy = OutputPolicy()
    restore: bool = Field(
        True,
        description="put redacted values back into the answer to the caller (placeholders "
        "only ever reach the model); false: the caller sees the placeholders",
    )
    deny_terms: tuple[str, ...] = Field(
        (),
        max_length=MAX_DENY_TERMS,
        description="words or phrases (case-insensitive, whole words) handled by the deny action",
    )
    deny_patterns: tuple[str, ...] = Field(
        (), max_length=MAX_DENY_PATTERNS, description="regular expressions, case-insensitive"
    )

    @field_validator("deny_terms")
    @classmethod
    def _terms(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        terms = tuple(dict.fromkeys(t.strip() for t in value if t.strip()))
        if any(len(t) > 200 for t in terms):
            raise ValueError("a deny term is at most 200 characters")
        return terms

    @field_validator("deny_patterns")
    @classmethod
    def _patterns(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            if not pattern or len(pattern) > 500:
                raise ValueError("a deny pattern is 1 to 500 characters")
            try:
                regex.compile(pattern)
            except regex.error as exc:
                raise ValueError(f"not a valid regular expression: {pattern!r} ({exc})") from None
        return value

    @property
    def uses_classifiers(self) -> bool:
        """Whether any action needs the MiniLM classifiers or the toxicity model."""
        return any(
            getattr(stage, name) != "allow"
            for stage in (self.input, self.output)
            for name in ("injection", "harmful", "toxicity")
            if name in type(stage).model_fields
        )


def merge_policy(base: SafetyPolicy, override: Mapping[str, Any] | None) -> SafetyPolicy:
    """``base`` with the fields ``override`` sets replaced (``input`` and ``output`` merge
    field by field). Raises ``PolicyError`` if the result is not a valid policy."""
    if not override:
        return base
    data = base.model_dump()
    for key, value in override.items():
        if key in ("input", "output") and isinstance(value, Mapping):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    try:
        return SafetyPolicy.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "policy"
            lines.append(f"{where}: {err['msg']}")
        raise PolicyError("; ".join(lines)) from None
