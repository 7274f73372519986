"""``POST /v1/moderations``, shaped like OpenAI's, backed by the content filter's detectors.

OpenAI's categories are filled from the detectors that can speak to them: the harmful-
request heads (weapons, crime, cyber, hate, self-harm, misinformation), the toxicity model
(insult, threat, obscene, identity hate) and, as extra categories, prompt injection,
personal data and secrets. ``sexual/minors`` and ``violence/graphic`` have no detector here
yet and always score 0; the README says so.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr
from starlette.responses import Response

from shardgate.metrics import GatewayMetrics
from shardgate.pipeline.base import Handler
from shardgate.pipeline.contentfilter import fail_or_count
from shardgate.pipeline.context import RequestContext
from shardgate.safety.events import SafetyEventLog
from shardgate.safety.scanner import SafetyScanner, Scan, TextScores
from shardgate.settings import SafetySettings
from shardgate.web import JSONResponse

__all__ = ["MODERATION_MODEL", "ModerationRequest", "moderation_handler", "moderation_result"]

MODERATION_MODEL = "shardgate-moderation-1"
MAX_INPUTS = 32
SHARE = 0.25  # a harm category is flagged when it is at least this share of a flagged harm


class _TextInput(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    type: Literal["text"]
    text: StrictStr


class ModerationRequest(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    input: (
        StrictStr
        | Annotated[list[StrictStr], Field(min_length=1, max_length=MAX_INPUTS)]
        | Annotated[list[_TextInput], Field(min_length=1, max_length=MAX_INPUTS)]
    )
    model: StrictStr | None = None

    def texts(self) -> list[str]:
        if isinstance(self.input, str):
            return [self.input]
        return [i if isinstance(i, str) else i.text for i in self.input]


def moderation_handler(
    scanner: SafetyScanner,
    events: SafetyEventLog,
    settings: SafetySettings,
    metrics: GatewayMetrics,
) -> Handler:
    async def moderations(ctx: RequestContext) -> Response:
        assert isinstance(ctx.parsed, ModerationRequest) and ctx.principal is not None
        record = events.recorder(ctx.principal, ctx.request_id, ctx.route)
        texts = ctx.parsed.texts()
        started = time.perf_counter()

        spans = await scanner.scan(texts, ("pii", "secrets"))
        scores = await scanner.scores(texts, failed=spans.failed)
        fail_or_count(spans, settings, metrics, "moderation", record)
        metrics.safety_latency.labels("moderation").observe(time.perf_counter() - started)
        results = [moderation_result(s, spans, i) for i, s in enumerate(scores)]
        for result in results:
            for category, flagged in result["categories"].items():
                if flagged:
                    score = result["category_scores"][category]
                    record("moderation", _detector(category), category, score, "flag")
        return JSONResponse(
            {
                "id": f"modr-{ctx.request_id}",
                "model": ctx.parsed.model or MODERATION_MODEL,
                "results": results,
            }
        )

    return moderations


def moderation_result(scores: TextScores, spans: Scan, index: int) -> dict[str, Any]:
    """One OpenAI moderation result for text ``index``: flags and scores per category."""
    harmful = scores.detections.get("harmful")
    injection = scores.detections.get("injection")
    tox = scores.toxicity

    def harm(*categories: str) -> tuple[float, bool]:
        """P(harmful, and one of ``categories``): the heads' categories do not overlap."""
        if harmful is None:
            return 0.0, False
        p = min(sum(harmful.categories.get(c, 0.0) for c in categories), 1.0)
        return p, harmful.flagged and p >= SHARE * harmful.score

    def toxic(label: str) -> tuple[float, bool]:
        p = tox.get(label, 0.0)
        return p, p >= 0.5

    def most(*parts: tuple[float, bool]) -> tuple[float, bool]:
        return max(p for p, _ in parts), any(f for _, f in parts)

    hate = most(toxic("identity_hate"), harm("hate"))
    threat = toxic("threat")
    self_harm = harm("self_harm")
    span = {h.detector for h in spans.hits if h.text == index}
    found: dict[str, tuple[float, bool]] = {
        "harassment": toxic("insult"),
        "harassment/threatening": threat,
        "hate": hate,
        "hate/threatening": (min(hate[0], threat[0]), hate[1] and threat[1]),
        "illicit": harm("crime", "cyber", "weapons"),
        "illicit/violent": harm("weapons"),
        "self-harm": self_harm,
        "self-harm/intent": self_harm,
        "self-harm/instructions": self_harm,
        "sexual": toxic("obscene"),
        "sexual/minors": (0.0, False),
        "violence": most(threat, harm("weapons")),
        "violence/graphic": (0.0, False),
        # Beyond OpenAI's set: what the content filter also looks for.
        "toxicity": most(toxic("toxic"), toxic("severe_toxic")),
        "misinformation": harm("misinformation"),
        "prompt-injection": (
            (injection.score, injection.flagged) if injection is not None else (0.0, False)
        ),
        "pii": (1.0, True) if "pii" in span else (0.0, False),
        "secrets": (1.0, True) if "secrets" in span else (0.0, False),
    }
    return {
        "flagged": any(f for _, f in found.values()),
        "categories": {c: f for c, (_, f) in found.items()},
        "category_scores": {c: round(p, 6) for c, (p, _) in found.items()},
        "category_applied_input_types": {c: ["text"] for c in found},
    }


_DETECTORS: dict[str, str] = {
    "harassment": "toxicity",
    "harassment/threatening": "toxicity",
    "sexual": "toxicity",
    "toxicity": "toxicity",
    "prompt-injection": "injection",
    "pii": "pii",
    "secrets": "secrets",
}


def _detector(category: str) -> str:
    return _DETECTORS.get(category, "harmful")
