"""The contract every safety detector keeps: ``scan(text)`` returns ``Finding`` spans.

Pattern detectors are plain CPU work on a string already in memory (regular expressions and
checksums, microseconds per kilobyte), so ``scan`` is synchronous: an ``async`` method would
add a coroutine per call and suggest an await point that does not exist. A detector that
needs I/O or heavy compute (a model server, a large classifier) is a different interface
and belongs behind an async seam, or the caller runs the sync one in a thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["Detector", "Finding"]


@dataclass(frozen=True, slots=True)
class Finding:
    """A span ``text[start:end]`` of one category (``"pii.email"``, ``"secret.jwt"``).

    ``score`` is the detector's confidence in ``[0, 1]``. A finding holds offsets only, never
    the matched text, so findings are safe to log and to store.
    """

    category: str
    start: int
    end: int
    score: float


class Detector(Protocol):
    name: str

    def scan(self, text: str) -> list[Finding]:
        """Every span of ``text`` this detector recognises, in no particular order."""
        ...
