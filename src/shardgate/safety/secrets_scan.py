"""Credentials found by pattern: API keys and tokens in their published formats, PEM private
keys, passwords in assignments and connection strings, and high-entropy values assigned to
names like ``token`` or ``secret``.

Known formats have fixed prefixes and lengths, so they are matched wherever they appear.
Assignments report only the value's span, so ``password = [SECRET_1]`` keeps its shape. The
generic rule needs a secret-like name, a value of 16+ characters mixing character classes
and a Shannon entropy of at least 3 bits per character; that keeps out identifiers,
placeholders (``YOUR_API_KEY``) and plain numbers.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator

from shardgate.safety.base import Finding

__all__ = ["SecretsDetector", "shannon_entropy"]

# (category, pattern, score); the whole match is the secret.
_KNOWN_FORMATS: tuple[tuple[str, re.Pattern[str], float], ...] = (
    ("secret.shardgate_key", re.compile(r"(?<![\w-])sk-sg-[A-Za-z0-9_-]{20,}"), 0.99),
    ("secret.anthropic_key", re.compile(r"(?<![\w-])sk-ant-[a-z]+\d*-[A-Za-z0-9_-]{32,}"), 0.99),
    (
        "secret.openai_key",
        re.compile(r"(?<![\w-])sk-(?!sg-|ant-)(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}"),
        0.9,
    ),
    ("secret.aws_access_key", re.compile(r"(?<![A-Za-z0-9])(?:AKIA|ASIA)[0-9A-Z]{16}\b"), 0.99),
    ("secret.github_token", re.compile(r"(?<![\w-])gh[pousr]_[A-Za-z0-9]{36,255}\b"), 0.99),
    ("secret.github_token", re.compile(r"(?<![\w-])github_pat_[A-Za-z0-9_]{22,255}"), 0.99),
    ("secret.slack_token", re.compile(r"(?<![\w-])xox[abposr]-[A-Za-z0-9-]{10,250}"), 0.99),
    (
        "secret.slack_webhook",
        re.compile(r"https://hooks\.slack\.com/services/[A-Za-z0-9_/]{20,}"),
        0.99,
    ),
    ("secret.stripe_key", re.compile(r"(?<![\w-])[sr]k_(?:live|test)_[A-Za-z0-9]{16,247}"), 0.99),
    ("secret.google_api_key", re.compile(r"(?<![\w-])AIza[0-9A-Za-z_-]{35}(?![\w-])"), 0.99),
    (
        "secret.jwt",
        re.compile(r"(?<![\w-])eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"),
        0.95,
    ),
    (
        "secret.private_key",
        re.compile(
            r"-----BEGIN[A-Z0-9 ]{0,40} PRIVATE KEY(?: BLOCK)?-----"
            r"(?:.*?-----END[A-Z0-9 ]{0,40} PRIVATE KEY(?: BLOCK)?-----|[A-Za-z0-9+/=\s:,-]*)",
            re.DOTALL,
        ),
        1.0,
    ),
)

_VALUE = r"""(?:"([^"\n]{1,256})"|'([^'\n]{1,256})'|([^\s'",;()\[\]{}<>]{1,256}+)(?![(\[{\w]))"""
_PASSWORD = re.compile(
    r"(?i)(?:password|passwd|passphrase|pwd)\w*[\"']?"
    rf"[ \t]*(?::=|=>|[:=])[ \t]*{_VALUE}"
)
_SECRET_NAME = re.compile(
    r"(?i)(?:secret|token|api[_-]?key|apikey|access[_-]?key"
    r"|private[_-]?key|credentials?|auth|signing[_-]?key|\bkey)[\"']?"
    rf"[ \t]*(?::=|=>|[:=])[ \t]*{_VALUE}"
)
_BEARER = re.compile(r"(?i)\b(?:bearer|token)\s+([A-Za-z0-9._~+/-]{20,}=*)")
_CONNECTION = re.compile(r"\b[a-z][a-z0-9+.-]{1,20}://[^\s:/@]{1,128}:([^\s@/]{1,256})@[\w.-]")
_PLACEHOLDER = re.compile(
    r"""(?ix)^(?:
        [*x•.#-]+ | <[^>]*> | \$\{?\w+\}? | \{\{.*\}\} | %\(?\w+\)?s?
        | [\w.]*(?:environ|getenv)[\w.]*
        | (?:none|null|nil|true|false|undefined|empty|required|optional|string|str|changeme)
        | (?:your|example|dummy|fake|placeholder)[\w-]* | (?:password|passwd|pwd|pass|secret)
    )$"""
)
_UUID = re.compile(r"(?i)^[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}$")


def shannon_entropy(value: str) -> float:
    """Bits per character of ``value``'s own character distribution."""
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values()) if n else 0.0


def _looks_random(value: str) -> bool:
    classes = any(map(str.islower, value)) + any(map(str.isupper, value))
    classes += any(map(str.isdigit, value))
    return (
        len(value) >= 16
        and classes >= 2
        and shannon_entropy(value) >= 3.0
        and not _UUID.match(value)
    )


def _value_span(m: re.Match[str]) -> tuple[int, int] | None:
    for group in (1, 2, 3):
        if m.group(group) is not None:
            start, end = m.span(group)
            if group == 3:  # an unquoted value may end a sentence: "password: hunter2."
                end = start + len(m.group(3).rstrip(".,"))
            value = m.string[start:end]
            return None if not value or _PLACEHOLDER.match(value) else (start, end)
    return None


def _find_known(text: str) -> Iterator[Finding]:
    for category, pattern, score in _KNOWN_FORMATS:
        for m in pattern.finditer(text):
            if category == "secret.openai_key" and not _looks_random(m.group()[3:]):
                continue  # "sk-some-long-css-class-name" is not a key
            yield Finding(category, m.start(), m.end(), score)


def _find_assigned(text: str) -> Iterator[Finding]:
    for m in _PASSWORD.finditer(text):
        span = _value_span(m)
        if span is not None:
            yield Finding("secret.password", *span, 0.8)
    for m in _CONNECTION.finditer(text):
        if not _PLACEHOLDER.match(m.group(1)):
            yield Finding("secret.password", *m.span(1), 0.9)
    for m in _SECRET_NAME.finditer(text):
        span = _value_span(m)
        if span is not None and _looks_random(text[span[0] : span[1]]):
            yield Finding("secret.generic", *span, 0.7)
    for m in _BEARER.finditer(text):
        if _looks_random(m.group(1)):
            yield Finding("secret.bearer_token", *m.span(1), 0.85)


class SecretsDetector:
    """Keys and tokens of known formats, private keys, and assigned passwords and secrets."""

    name = "secrets"

    def scan(self, text: str) -> list[Finding]:
        return [*_find_known(text), *_find_assigned(text)]
