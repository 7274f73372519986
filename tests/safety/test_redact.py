"""Redaction: merging overlaps, numbering, one placeholder per value, restoring (also across
stream chunks), and never showing raw values in repr or str."""

from __future__ import annotations

from shardgate.safety import (
    Finding,
    PiiDetector,
    Redaction,
    SecretsDetector,
    merge_findings,
    placeholder_label,
    redact,
)

DETECTORS = (PiiDetector(), SecretsDetector())


def scan(text: str) -> list[Finding]:
    return [f for d in DETECTORS for f in d.scan(text)]


TEXT = (
    "Mail anna@example.com or call +44 20 7946 0958; card 4111 1111 1111 1111, "
    "IBAN GB82WEST12345698765432, SSN 123-45-6789, host 10.0.0.5, "
    'password = "hunter2". Again: anna@example.com, bob@example.org.'
)


def test_numbered_typed_placeholders_and_same_value_same_placeholder() -> None:
    redacted, redaction = redact(TEXT, scan(TEXT))
    assert redacted == (
        "Mail [EMAIL_1] or call [PHONE_1]; card [CARD_1], IBAN [IBAN_1], SSN [SSN_1], "
        'host [IP_1], password = "[SECRET_1]". Again: [EMAIL_1], [EMAIL_2].'
    )
    assert redaction.restore(redacted) == TEXT
    assert len(redaction) == 8
    assert redaction.categories["pii.email"] == 3


def test_one_redaction_spans_the_texts_of_a_request() -> None:
    redaction = Redaction()
    first = redaction.apply("from anna@example.com", scan("from anna@example.com"))
    second = redaction.apply("to anna@example.com", scan("to anna@example.com"))
    assert (first, second) == ("from [EMAIL_1]", "to [EMAIL_1]")


def test_overlaps_merge_to_their_union_under_the_highest_priority() -> None:
    merged = merge_findings(
        [
            Finding("pii.email", 10, 30, 0.99),
            Finding("secret.password", 5, 15, 0.8),
            Finding("pii.ip", 40, 50, 0.9),
            Finding("pii.phone", 29, 35, 0.9),
            Finding("pii.ip", 60, 60, 0.9),  # empty: dropped
        ]
    )
    assert merged == [
        Finding("secret.password", 5, 35, 0.8),
        Finding("pii.ip", 40, 50, 0.9),
    ]


def test_connection_string_is_one_secret_not_an_email() -> None:
    text = "DSN postgres://app:s3cret@db.example.com:5432/app"
    redacted, redaction = redact(text, scan(text))
    assert redacted == "DSN postgres://app:[SECRET_1]:5432/app"
    assert redaction.restore(redacted) == text


def test_restore_leaves_unknown_and_literal_placeholders() -> None:
    text = "I typed [EMAIL_1] myself; my address is anna@example.com"
    redacted, redaction = redact(text, scan(text))
    assert redacted == "I typed [EMAIL_1] myself; my address is [EMAIL_2]"
    assert redaction.restore("[EMAIL_2] and [PHONE_9] and [EMAIL_1]") == (
        "anna@example.com and [PHONE_9] and [EMAIL_1]"
    )
    assert Redaction().restore("[EMAIL_1]") == "[EMAIL_1]"


def test_repr_and_str_never_show_values() -> None:
    _, redaction = redact(TEXT, scan(TEXT))
    for shown in (
        repr(redaction),
        str(redaction),
        f"{redaction}",
        repr(redaction.stream_restorer()),
    ):
        for secret in ("anna@", "7946", "4111", "GB82", "123-45", "10.0.0.5", "hunter2"):
            assert secret not in shown
    assert "placeholders=8" in repr(redaction)


def test_stream_restore_across_chunk_boundaries() -> None:
    text = "write to anna@example.com and +44 20 7946 0958 [note] done ["
    redacted, redaction = redact(text, scan(text))
    assert redacted == "write to [EMAIL_1] and [PHONE_1] [note] done ["
    for size in range(1, len(redacted) + 1):
        restorer = redaction.stream_restorer()
        chunks = [redacted[i : i + size] for i in range(0, len(redacted), size)]
        out = "".join(restorer.feed(c) for c in chunks) + restorer.flush()
        assert out == text, size


def test_stream_restore_holds_only_a_possible_placeholder() -> None:
    _, redaction = redact("anna@example.com", scan("anna@example.com"))
    restorer = redaction.stream_restorer()
    assert restorer.feed("see [EMA") == "see "
    assert restorer.feed("IL_1] and [x") == "anna@example.com and [x"
    assert restorer.feed("] [EMAIL_") == "] "
    assert restorer.feed("12]") == "[EMAIL_12]"
    assert restorer.feed("[EMAIL_1") == ""
    assert restorer.flush() == "[EMAIL_1"


def test_labels() -> None:
    assert placeholder_label("pii.card") == "CARD"
    assert placeholder_label("secret.jwt") == "SECRET"
    assert placeholder_label("pii.person") == "PERSON"
    assert placeholder_label("custom.deny_list") == "DENYLIST"
    assert placeholder_label("custom.42") == "REDACTED"
