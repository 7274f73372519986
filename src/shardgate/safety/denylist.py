"""A tenant's own deny-list: whole-word terms and regular expressions, as one detector.

Tenants write the patterns, so a pattern is untrusted input: it runs on the ``regex``
engine with a time limit, and one that takes too long is a detector failure (handled by
the detector's fail-open/closed setting), never a stuck gateway.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import regex

from shardgate.safety.base import Finding

__all__ = ["DenyList", "deny_list"]

TIMEOUT_S = 0.05  # per scanned text


class DenyList:
    name = "deny"

    def __init__(self, terms: Sequence[str], patterns: Sequence[str]) -> None:
        parts = [rf"(?<!\w){regex.escape(t)}(?!\w)" for t in terms]
        parts += [f"(?:{p})" for p in patterns]
        self._regex = regex.compile("|".join(parts), regex.IGNORECASE) if parts else None

    def __bool__(self) -> bool:
        return self._regex is not None

    def scan(self, text: str) -> list[Finding]:
        """Every match as a ``deny`` finding; ``TimeoutError`` if the patterns are too slow."""
        if self._regex is None:
            return []
        return [
            Finding("deny", m.start(), m.end(), 1.0)
            for m in self._regex.finditer(text, timeout=TIMEOUT_S)
            if m.end() > m.start()
        ]


@functools.lru_cache(maxsize=256)
def deny_list(terms: tuple[str, ...], patterns: tuple[str, ...]) -> DenyList:
    """The compiled deny-list of a policy, shared by every request with the same one."""
    return DenyList(terms, patterns)
