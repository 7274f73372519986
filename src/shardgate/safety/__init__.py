"""Pattern detectors for personal data and secrets, and the redaction that hides them.

A pure library: detectors return ``Finding`` spans, ``redact`` replaces them with typed
placeholders (``[EMAIL_1]``) and its ``Redaction`` restores them in the model's answer.
"""

from shardgate.safety.base import Detector, Finding
from shardgate.safety.pii import PII_CATEGORIES, PiiDetector, iban_valid, luhn_valid
from shardgate.safety.redact import (
    Redaction,
    StreamRestorer,
    merge_findings,
    placeholder_label,
    redact,
)
from shardgate.safety.secrets_scan import SecretsDetector

__all__ = [
    "PII_CATEGORIES",
    "Detector",
    "Finding",
    "PiiDetector",
    "Redaction",
    "SecretsDetector",
    "StreamRestorer",
    "iban_valid",
    "luhn_valid",
    "merge_findings",
    "placeholder_label",
    "redact",
]
