"""Every detector behind one async call, for the content filter, the output monitor and
``/v1/moderations``.

Pattern detectors (PII, secrets, a tenant's deny-list) are cheap and run on the event loop
for short texts. The models (MiniLM heads for injection and harmful requests, the toxicity
BiLSTM) are CPU-heavy, so they run on one worker thread, loaded there when the gateway
starts. A detector that raises, or whose model failed to load, is reported in
``Scan.failed``; what that means for the request (fail open or closed) is the caller's
setting, so a broken detector never turns into a 500.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import OrderedDict, deque
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from threadpoolctl import threadpool_limits

from shardgate.safety.base import Detector, Finding
from shardgate.safety.classifier import WEIGHTS_DIR, Detection, SafetyClassifier
from shardgate.safety.denylist import DenyList
from shardgate.safety.pii import PiiDetector
from shardgate.safety.redact import redact
from shardgate.safety.secrets_scan import SecretsDetector
from shardgate.safety.toxicity import ToxicityDetector

__all__ = ["Hit", "SafetyScanner", "Scan", "TextScores"]

log = logging.getLogger(__name__)

CLASSIFIED = ("injection", "harmful")
MASKED = ("pii", "secrets")
INLINE_CHARS = 16_384  # longer inputs are pattern-scanned on the worker thread
JUDGED_CHARS = 4_096  # a longer text is judged by its head and its tail
TOXICITY_THRESHOLD = 0.5
BATCH_TEXTS = 32  # texts scored together at most
CACHE_ENTRIES = 8192  # judged texts remembered (by digest: never the text), per model


@dataclass(frozen=True, slots=True)
class Hit:
    """One detector's finding in text ``text`` of a scan; ``spans`` for span detectors."""

    detector: str  # "pii", "secrets", "deny", "injection", "harmful", "toxicity"
    category: str  # "pii.email", "injection", "harmful.weapons", "toxicity.insult", "deny"
    score: float
    text: int
    spans: tuple[Finding, ...] = ()


@dataclass
class Scan:
    hits: list[Hit] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # detector -> what went wrong

    def of(self, detector: str) -> list[Hit]:
        return [h for h in self.hits if h.detector == detector]


@dataclass(frozen=True)
class _Job:
    """Texts a request wants scored, waiting for the worker."""

    texts: list[str]
    models: frozenset[str]
    done: asyncio.Future[tuple[list[TextScores], dict[str, str]]]


@dataclass(frozen=True)
class TextScores:
    """The models' scores for one text (empty where a model is not loaded or failed)."""

    detections: dict[str, Detection]
    toxicity: dict[str, float]


class SafetyScanner:
    def __init__(
        self,
        toxicity_cache_dir: Path,
        weights_dir: Path | None = None,
        load_classifier: Callable[[Path], SafetyClassifier] | None = None,
    ) -> None:
        self._toxicity_cache = toxicity_cache_dir
        self._weights_dir = weights_dir or WEIGHTS_DIR
        self._load_classifier = load_classifier or (lambda d: SafetyClassifier.load(None, d))
        self._span: dict[str, Detector] = {"pii": PiiDetector(), "secrets": SecretsDetector()}
        self._classifier: SafetyClassifier | None = None
        self._toxicity: ToxicityDetector | None = None
        self._load_errors: dict[str, str] = {}
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="safety")
        # (model, digest of a text) -> its scores; only the worker thread touches it.
        self._cache: OrderedDict[tuple[str, bytes], Any] = OrderedDict()
        self._loaded = asyncio.Event()
        self._waiting: deque[_Job] = deque()
        self._batcher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Load the models on the worker thread (seconds); scans wait until this is done."""
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._load)
        finally:
            self._loaded.set()

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    @property
    def ready(self) -> bool:
        return self._loaded.is_set()

    @property
    def load_errors(self) -> dict[str, str]:
        return dict(self._load_errors)

    def _load(self) -> None:
        # numpy's BLAS (the toxicity model) and torch's OpenMP (MiniLM) each spin a thread
        # per core; taking turns on two cores, they made one scan 2.5x slower than its parts.
        threadpool_limits(1, "blas")
        try:
            self._classifier = self._load_classifier(self._weights_dir)
        except Exception as exc:  # a missing or corrupt weights file, a broken torch
            self._load_errors.update(dict.fromkeys(CLASSIFIED, _describe(exc)))
            log.error("safety classifiers unavailable: %s", _describe(exc))
        try:
            self._toxicity = ToxicityDetector.load(self._toxicity_cache, TOXICITY_THRESHOLD)
        except Exception as exc:
            self._load_errors["toxicity"] = _describe(exc)
            log.error("toxicity model unavailable: %s", _describe(exc))

    async def scan(
        self,
        texts: Sequence[str],
        detectors: Collection[str],
        deny: DenyList | None = None,
        judged: Sequence[int] | None = None,
    ) -> Scan:
        """Run ``detectors`` over ``texts``: span detectors over all of them, the models over
        the texts at the indices ``judged`` (default: all)."""
        scan = Scan()
        span = [d for d in ("pii", "secrets", "deny") if d in detectors]
        if span:
            if sum(map(len, texts)) <= INLINE_CHARS:
                self._scan_spans(texts, span, deny, scan)
            else:
                try:
                    await self._run(self._scan_spans, texts, span, deny, scan)
                except Exception as exc:  # the worker is shutting down, say
                    scan.failed.update(dict.fromkeys(span, _describe(exc)))
        models = [d for d in (*CLASSIFIED, "toxicity") if d in detectors]
        if models:
            indices = list(range(len(texts))) if judged is None else list(judged)
            masked = self._masked([texts[i] for i in indices], indices, scan, set(span))
            scores = await self.scores(masked, models, scan.failed)
            for i, text_scores in zip(indices, scores, strict=True):
                scan.hits += _model_hits(i, text_scores)
        return scan

    def _masked(
        self, texts: list[str], indices: list[int], scan: Scan, scanned: set[str]
    ) -> list[str]:
        """The texts with personal data and secrets replaced by typed placeholders, as the
        models judge them: an address or a phone number says nothing about intent, and the
        raw values made everyday requests ("Send a note to jane@…") look harmful."""
        found: dict[int, list[Finding]] = {}
        for hit in scan.hits:
            if hit.detector in MASKED:
                found.setdefault(hit.text, []).extend(hit.spans)
        missing = [d for d in MASKED if d not in scanned]
        if missing and sum(map(len, texts)) <= INLINE_CHARS:
            extra = Scan()
            self._scan_spans(texts, missing, None, extra)
            for hit in extra.hits:
                found.setdefault(indices[hit.text], []).extend(hit.spans)
        return [
            redact(t, found[i])[0] if i in found else t for t, i in zip(texts, indices, strict=True)
        ]

    async def scores(
        self,
        texts: Sequence[str],
        models: Collection[str] = (*CLASSIFIED, "toxicity"),
        failed: dict[str, str] | None = None,
    ) -> list[TextScores]:
        """The models' scores per text; a model that is unavailable or raises is noted in
        ``failed`` and its scores left out."""
        failed = {} if failed is None else failed
        await self._loaded.wait()
        for name in models:
            if name in self._load_errors:
                failed[name] = self._load_errors[name]
        wanted = [m for m in models if m not in failed]
        if not wanted or not texts:
            return [TextScores({}, {}) for _ in texts]
        job = _Job(list(texts), frozenset(wanted), asyncio.get_running_loop().create_future())
        self._waiting.append(job)
        if self._batcher is None or self._batcher.done():
            self._batcher = asyncio.create_task(self._run_batches())
        scores, batch_failed = await job.done
        failed.update(batch_failed)
        return scores

    async def _run_batches(self) -> None:
        """While requests wait, score them together: the worker runs one batch at a time,
        and whatever arrived meanwhile forms the next. MiniLM scores 8 short prompts in one
        batch 3x faster than one by one, so under load a request waits for less."""
        while self._waiting:
            batch: list[_Job] = []
            while self._waiting and sum(len(j.texts) for j in batch) < BATCH_TEXTS:
                batch.append(self._waiting.popleft())
            texts = [t for job in batch for t in job.texts]
            models = sorted(frozenset().union(*(job.models for job in batch)))
            failed: dict[str, str] = {}
            try:
                scores: list[TextScores] = await self._run(self._score, texts, models, failed)
            except BaseException as exc:  # the worker is shutting down, say: no 500
                for job in batch:
                    reason = dict.fromkeys(job.models, _describe(exc))
                    _settle(job, [TextScores({}, {}) for _ in job.texts], reason)
                if not isinstance(exc, Exception):
                    raise
                continue
            start = 0
            for job in batch:
                mine = scores[start : start + len(job.texts)]
                start += len(job.texts)
                reason = {m: r for m, r in failed.items() if m in job.models}
                _settle(job, [_only(s, job.models) for s in mine], reason)

    def _score(
        self, texts: list[str], models: list[str], failed: dict[str, str]
    ) -> list[TextScores]:
        keys = [hashlib.blake2b(t.encode(), digest_size=16).digest() for t in texts]
        detections: list[dict[str, Detection]] = [{} for _ in texts]
        if self._classifier is not None and any(m in CLASSIFIED for m in models):
            try:
                found = self._cached("classifier", texts, keys, self._classify)
                detections = [{k: v for k, v in f.items() if k in models} for f in found]
            except Exception as exc:
                failed.update({m: _describe(exc) for m in CLASSIFIED if m in models})
        toxicity: list[dict[str, float]] = [{} for _ in texts]
        if self._toxicity is not None and "toxicity" in models:
            try:
                toxicity = self._cached("toxicity", texts, keys, self._toxic)
            except Exception as exc:
                failed["toxicity"] = _describe(exc)
        return [TextScores(d, t) for d, t in zip(detections, toxicity, strict=True)]

    def _cached(
        self,
        model: str,
        texts: list[str],
        keys: list[bytes],
        run: Callable[[list[str]], list[Any]],
    ) -> list[Any]:
        """``run`` over the texts this model has not judged lately; the others from the
        cache. A chat resends its history with every turn: each message is judged once."""
        cache = self._cache
        todo = [i for i, k in enumerate(keys) if (model, k) not in cache]
        if todo:
            for i, result in zip(todo, run([texts[i] for i in todo]), strict=True):
                cache[model, keys[i]] = result
        out = []
        for k in keys:
            cache.move_to_end((model, k))
            out.append(cache[model, k])
        while len(cache) > CACHE_ENTRIES:
            cache.popitem(last=False)
        return out

    def _classify(self, texts: list[str]) -> list[dict[str, Detection]]:
        assert self._classifier is not None
        pieces, owner = _judged_pieces(texts)
        out: list[dict[str, Detection]] = [{} for _ in texts]
        for i, found in zip(owner, self._classifier.classify(pieces), strict=True):
            for name, d in found.items():
                if d.score >= out[i].get(name, d).score:
                    out[i][name] = d
        return out

    def _toxic(self, texts: list[str]) -> list[dict[str, float]]:
        assert self._toxicity is not None
        pieces, owner = _judged_pieces(texts)
        out: list[dict[str, float]] = [{} for _ in texts]
        for i, scores in zip(owner, self._toxicity.scores(pieces), strict=True):
            out[i] = {k: max(v, out[i].get(k, 0.0)) for k, v in scores.items()}
        return out

    def _scan_spans(
        self, texts: Sequence[str], span: list[str], deny: DenyList | None, scan: Scan
    ) -> None:
        detectors: dict[str, Detector | None] = {n: self._span.get(n) or deny for n in span}
        for name, detector in detectors.items():
            if detector is None:
                continue
            try:
                for i, text in enumerate(texts):
                    by_category: dict[str, list[Finding]] = {}
                    for f in detector.scan(text):
                        by_category.setdefault(f.category, []).append(f)
                    scan.hits += [
                        Hit(name, category, max(f.score for f in spans), i, tuple(spans))
                        for category, spans in by_category.items()
                    ]
            except Exception as exc:  # a deny pattern past its time limit, say
                scan.failed[name] = _describe(exc)
                scan.hits = [h for h in scan.hits if h.detector != name]

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)


def _settle(job: _Job, scores: list[TextScores], failed: dict[str, str]) -> None:
    if not job.done.done():  # its request may have been cancelled meanwhile
        job.done.set_result((scores, failed))


def _only(scores: TextScores, models: frozenset[str]) -> TextScores:
    """A batch ran the union of its requests' models; a request gets the ones it asked for."""
    detections = {k: v for k, v in scores.detections.items() if k in models}
    return TextScores(detections, scores.toxicity if "toxicity" in models else {})


def _model_hits(i: int, scores: TextScores) -> list[Hit]:
    hits = []
    for name, d in scores.detections.items():
        if d.flagged:
            top = max(d.categories.items(), key=lambda kv: kv[1], default=None)
            category = f"{name}.{top[0]}" if top is not None else name
            hits.append(Hit(name, category, d.score, i))
    for label, p in scores.toxicity.items():
        if p >= TOXICITY_THRESHOLD:
            hits.append(Hit("toxicity", f"toxicity.{label}", p, i))
    return hits


def _judged_pieces(texts: Sequence[str]) -> tuple[list[str], list[int]]:
    """Texts cut to what the models read: a long text becomes its head and its tail."""
    pieces: list[str] = []
    owner: list[int] = []
    for i, text in enumerate(texts):
        if len(text) <= 2 * JUDGED_CHARS:
            pieces.append(text)
            owner.append(i)
        else:
            pieces += (text[:JUDGED_CHARS], text[-JUDGED_CHARS:])
            owner += (i, i)
    return pieces, owner


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]
