"""Secret detectors: keys of known formats, private keys, passwords in assignments and
connection strings, generic high-entropy values, and look-alikes that must not match.
The fake keys are assembled from pieces so that the file itself trips no secret scanner."""

from __future__ import annotations

import pytest

from shardgate.safety import SecretsDetector
from shardgate.safety.secrets_scan import shannon_entropy

DETECTOR = SecretsDetector()
RANDOM40 = "Qw3rTy7uIoP4sDfGhJkL9zXcVbNm12aB5cD8eF0g"


def found(text: str) -> list[tuple[str, str]]:
    return sorted((f.category, text[f.start : f.end]) for f in DETECTOR.scan(text))


@pytest.mark.parametrize(
    ("category", "value"),
    [
        ("secret.aws_access_key", "AKIA" + "IOSFODNN7EXAMPLE"),
        ("secret.github_token", "ghp_" + RANDOM40[:36]),
        ("secret.github_token", "github_pat_" + "11ABCDEFG0" + RANDOM40 + "_" + RANDOM40),
        ("secret.slack_token", "xoxb-" + "1234567890-1234567890123-" + RANDOM40[:24]),
        ("secret.stripe_key", "sk_" + "live_" + RANDOM40[:24]),
        ("secret.openai_key", "sk-" + "proj-" + RANDOM40 + RANDOM40),
        ("secret.openai_key", "sk-" + RANDOM40[:20] + "T3BlbkFJ" + RANDOM40[:20]),
        ("secret.shardgate_key", "sk-sg-" + "Qw3rTy_uIoP-4sDfGhJkL9zXcVbNm1234567890ab"),
        ("secret.google_api_key", "AIza" + "SyA-" + RANDOM40[:31]),
        (
            "secret.jwt",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
            "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        ),
    ],
)
def test_known_formats(category: str, value: str) -> None:
    assert found(f"use {value} for the call") == [(category, value)]


def test_private_key_block_and_a_truncated_one() -> None:
    block = (
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7\nq0fQ==\n-----END RSA PRIVATE KEY-----"
    )
    assert found(f"key:\n{block}\nthanks") == [("secret.private_key", block)]
    head = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\nAAAABG5vbmU"
    assert found(head) == [("secret.private_key", head)]
    assert found("-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n") == []


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('password = "hunter2"', "hunter2"),
        ("PASSWORD: Tr0ub4dor&3", "Tr0ub4dor&3"),
        ("pwd=letmein", "letmein"),
        ('{"db_password": "s3cr3t!"}', "s3cr3t!"),
        ("export MYSQL_PASSWORD='c0rrect horse'", "c0rrect horse"),
        ("The password: hunter2.", "hunter2"),
        ("postgres://app:Sup3rS3cret@db.internal:5432/app", "Sup3rS3cret"),
        ("redis://default:p4ss@10.0.0.5:6379", "p4ss"),
    ],
)
def test_passwords(text: str, value: str) -> None:
    assert ("secret.password", value) in found(text)


@pytest.mark.parametrize(
    "text",
    [
        "password = get_password()",
        'password = os.environ["DB_PASSWORD"]',
        "password: ********",
        "password: ${DB_PASSWORD}",
        'password: "<your password>"',
        "password = None",
        "password_min_length: 12",  # a number of characters is not a password... but see below
        "postgres://app:${PGPASS}@db/app",
        "Forgot your password? Reset it here.",
    ],
)
def test_password_lookalikes(text: str) -> None:
    values = [v for c, v in found(text) if c == "secret.password"]
    # "12" after password_min_length is a real limitation of assignment matching; it is short
    # and harmless to redact, so the test documents it rather than hides it.
    assert values in ([], ["12"]), values


def test_generic_high_entropy_after_a_secret_word() -> None:
    assert found('api_key = "9f8e7d6c5b4a39281716a5b4c3d2e1f0"') == [
        ("secret.generic", "9f8e7d6c5b4a39281716a5b4c3d2e1f0")
    ]
    assert found(f"client_secret: {RANDOM40}") == [("secret.generic", RANDOM40)]
    assert found("Authorization: Bearer 8Hx2kLm9Qp4Rt7Wv1Yz3Ab6Cd") == [
        ("secret.bearer_token", "8Hx2kLm9Qp4Rt7Wv1Yz3Ab6Cd")
    ]


@pytest.mark.parametrize(
    "text",
    [
        "token: YOUR_API_KEY_HERE",
        "secret = abcdefghijklmnopqrst",
        "token_count: 2048",
        "api_key = 1234567890123456",
        "key: 550e8400-e29b-41d4-a716-446655440000",
        "commit 3f786850e387550fdab836ed7e6dc881de23001b",
        "see https://github.com/encode/httpx/blob/master/httpx/_exceptions.py",
        "class sk-learn-some-long-css-class-name and sklearn 1.5.2",
        "version 2.31.0, build 4f1c2e9",
        "monkey = 'Ab3dEf9hIjKl5mNoPq'",
    ],
)
def test_secret_lookalikes(text: str) -> None:
    assert found(text) == []


def test_entropy() -> None:
    assert shannon_entropy("") == 0.0
    assert shannon_entropy("aaaa") == 0.0
    assert shannon_entropy("abcd") == pytest.approx(2.0)
