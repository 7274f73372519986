"""Replace found spans with typed, numbered placeholders, and put the values back.

One ``Redaction`` belongs to one request: every text of the request goes through it, so the
same value gets the same placeholder in the system prompt, the user turn and the tool
results, and ``restore`` (or a ``StreamRestorer`` for streamed answers) turns the model's
placeholders back into the caller's values. A ``Redaction`` holds raw values, so its
``repr`` and ``str`` show counts only; it must not outlive the request.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

from shardgate.safety.base import Finding

__all__ = ["Redaction", "StreamRestorer", "merge_findings", "placeholder_label", "redact"]

_LABELS = {
    "pii.email": "EMAIL",
    "pii.phone": "PHONE",
    "pii.card": "CARD",
    "pii.iban": "IBAN",
    "pii.ssn": "SSN",
    "pii.ip": "IP",
}
# Which category names an overlap: a secret inside a URL outranks the "e-mail" it looks like.
_PRIORITY = {"secret": 7, "pii.iban": 6, "pii.card": 5, "pii.ssn": 4, "pii.email": 3}
_PLACEHOLDER = re.compile(r"\[([A-Z][A-Z0-9]*)_([1-9][0-9]*)\]")
# The longest tail a chunk may end with that could still grow into a placeholder.
_PARTIAL = re.compile(r"\[(?:[A-Z][A-Z0-9]*(?:_[0-9]*)?)?")
_MAX_PLACEHOLDER = 40


def placeholder_label(category: str) -> str:
    """``"pii.email"`` -> ``"EMAIL"``, any ``"secret.*"`` -> ``"SECRET"``, otherwise the last
    part of the category in capitals (``"pii.person"`` -> ``"PERSON"``)."""
    if category in _LABELS:
        return _LABELS[category]
    if category.split(".", 1)[0] == "secret":
        return "SECRET"
    label = re.sub(r"[^A-Z0-9]", "", category.rsplit(".", 1)[-1].upper())
    return label if label[:1].isalpha() else "REDACTED"


def _priority(category: str) -> int:
    return _PRIORITY.get(category, _PRIORITY.get(category.split(".", 1)[0], 1))


def merge_findings(findings: Iterable[Finding]) -> list[Finding]:
    """Overlapping findings become one finding over their union, so no part of either span
    survives; it takes the category of the highest-priority member, then the longest, then
    the highest-scoring. Returned sorted by start, non-overlapping."""
    merged: list[Finding] = []
    group: list[Finding] = []
    end = -1
    for f in sorted((f for f in findings if f.end > f.start), key=lambda f: (f.start, -f.end)):
        if group and f.start >= end:
            merged.append(_union(group))
            group = []
        group.append(f)
        end = max(end, f.end) if len(group) > 1 else f.end
    if group:
        merged.append(_union(group))
    return merged


def _union(group: Sequence[Finding]) -> Finding:
    best = max(group, key=lambda f: (_priority(f.category), f.end - f.start, f.score))
    return Finding(best.category, group[0].start, max(f.end for f in group), best.score)


class Redaction:
    """The placeholders of one request and the values behind them."""

    def __init__(self) -> None:
        self._values: dict[str, str] = {}  # placeholder -> original value
        self._placeholders: dict[tuple[str, str], str] = {}  # (label, value) -> placeholder
        self._next: Counter[str] = Counter()
        self._categories: Counter[str] = Counter()

    def apply(self, text: str, findings: Iterable[Finding]) -> str:
        """``text`` with every (merged) finding replaced by its placeholder."""
        parts: list[str] = []
        pos = 0
        for f in merge_findings(findings):
            placeholder = self._placeholder(f.category, text[f.start : f.end], text)
            parts += (text[pos : f.start], placeholder)
            pos = f.end
            self._categories[f.category] += 1
        parts.append(text[pos:])
        return "".join(parts)

    def restore(self, text: str) -> str:
        """``text`` with this request's placeholders replaced by their values; a placeholder
        this request did not hand out is left as it is."""
        if not self._values:
            return text
        return _PLACEHOLDER.sub(lambda m: self._values.get(m.group(), m.group()), text)

    def stream_restorer(self) -> StreamRestorer:
        return StreamRestorer(self)

    @property
    def categories(self) -> dict[str, int]:
        """How many spans of each category were replaced: safe to log and count."""
        return dict(self._categories)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Redaction(placeholders={len(self._values)}, categories={self.categories})"

    __str__ = __repr__

    def _placeholder(self, category: str, value: str, text: str) -> str:
        label = placeholder_label(category)
        key = (label, value)
        if key not in self._placeholders:
            self._next[label] += 1
            placeholder = f"[{label}_{self._next[label]}]"
            while placeholder in text:  # the text already says "[EMAIL_1]": skip that number
                self._next[label] += 1
                placeholder = f"[{label}_{self._next[label]}]"
            self._placeholders[key] = placeholder
            self._values[placeholder] = value
        return self._placeholders[key]


def redact(text: str, findings: Iterable[Finding]) -> tuple[str, Redaction]:
    """Redact one text in a fresh ``Redaction``; use ``Redaction.apply`` for several texts
    of the same request."""
    redaction = Redaction()
    return redaction.apply(text, findings), redaction


class StreamRestorer:
    """Restores placeholders in streamed text. A chunk that ends in what may be the start of
    a placeholder (``"... write to [EMA"``) has that tail held back until the next chunk
    completes or refutes it; ``flush`` releases whatever is held at the end of the stream."""

    def __init__(self, redaction: Redaction) -> None:
        self._redaction = redaction
        self._held = ""

    def feed(self, chunk: str) -> str:
        text = self._held + chunk
        cut = _hold_from(text)
        self._held = text[cut:]
        return self._redaction.restore(text[:cut])

    def flush(self) -> str:
        text, self._held = self._held, ""
        return self._redaction.restore(text)

    def __repr__(self) -> str:
        return f"StreamRestorer(held_chars={len(self._held)})"


def _hold_from(text: str) -> int:
    """Where the possibly incomplete placeholder at the end of ``text`` starts, or its end."""
    i = text.rfind("[", max(0, len(text) - _MAX_PLACEHOLDER))
    if i != -1 and _PARTIAL.fullmatch(text, i):
        return i
    return len(text)
