"""Pattern PII detectors: realistic positives, look-alikes that must not match, checksums,
and recall on the generated sample set in ``bench/_pii_samples.py``."""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

from shardgate.safety import PiiDetector, iban_valid, luhn_valid

DETECTOR = PiiDetector()


def found(text: str, category: str | None = None) -> list[tuple[str, str]]:
    return sorted(
        (f.category, text[f.start : f.end])
        for f in DETECTOR.scan(text)
        if category is None or f.category == category
    )


@pytest.mark.parametrize(
    "value",
    ["john.doe@example.com", "anna_smith+news@mail.acme-corp.de", "x@cs.stanford.edu"],
)
def test_emails(value: str) -> None:
    assert found(f"Write to <{value}>, please.") == [("pii.email", value)]


@pytest.mark.parametrize(
    "value",
    [
        "+44 20 7946 0958",
        "+1 (415) 555-2671",
        "+49 30 901820",
        "+44 (0)20 7946 0958",
        "+33 1 42 68 53 00",
        "+4930901820",
        "(415) 555-2671",
        "415-555-2671",
        "415.555.2671",
        "1-800-555-0199",
    ],
)
def test_phones(value: str) -> None:
    assert found(f"Call {value}. Thanks", "pii.phone") == [("pii.phone", value)]


@pytest.mark.parametrize(
    "text",
    [
        "Released on 2024-01-15 at 12:30:45 +0200.",
        "Order 123456789012 shipped; total $1,234,567.89.",
        "Tracking 4155552671 and zip 94107-1234.",
        "Version 10.0.19041.1 and ISBN 978-3-16-148410-0.",
        "Score was 3+4 = 7, and +5 points.",
        "Invoice 2023-0042-7781 is overdue.",
        "call 123-456-7890",  # area codes never start with 0 or 1
    ],
)
def test_phone_lookalikes(text: str) -> None:
    assert found(text, "pii.phone") == []


@pytest.mark.parametrize(
    "value",
    [
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "5555555555554444",
        "3782 822463 10005",
        "6011111111111117",
        "3530111333300000",
        "2223003122003222",
    ],
)
def test_cards(value: str) -> None:
    assert found(f"Card: {value} exp 09/27", "pii.card") == [("pii.card", value)]


def test_card_found_inside_a_longer_run_of_groups() -> None:
    assert found("ref 12 4111 1111 1111 1111 x", "pii.card") == [
        ("pii.card", "4111 1111 1111 1111")
    ]


@pytest.mark.parametrize(
    "text",
    [
        "Card: 4111 1111 1111 1112",  # Luhn fails
        "Card: 4111 1111 1111 11",  # too short
        "id 8111111111111111118",  # Luhn-valid, no issuer starts with 8
        "uuid 550e8400-e29b-41d4-a716-446655440000",
        "commit 3f786850e387550fdab836ed7e6dc881de23001b",
        "numbers 4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1",
        "order 0000000000000000",
        "1234-5678 9012-3456 mixes separators",
    ],
)
def test_card_lookalikes(text: str) -> None:
    assert found(text, "pii.card") == []


def test_luhn() -> None:
    assert luhn_valid("79927398713")
    assert not luhn_valid("79927398710")


@pytest.mark.parametrize(
    "value", ["DE89 3704 0044 0532 0130 00", "GB82WEST12345698765432", "NL91ABNA0417164300"]
)
def test_ibans(value: str) -> None:
    assert found(f"IBAN {value} AT once", "pii.iban") == [("pii.iban", value)]


def test_iban_checksum_and_length() -> None:
    assert iban_valid("GB82WEST12345698765432")
    assert not iban_valid("GB83WEST12345698765432")  # check digits off by one
    assert not iban_valid("GB82WEST1234569876543")  # one character short for GB
    assert not iban_valid("ZZ82WEST12345698765432")  # no such country
    assert found("IBAN DE88 3704 0044 0532 0130 00", "pii.iban") == []
    assert found("IBAN DE89 3704 0044 0532 0130 001", "pii.iban") == []


def test_digits_inside_an_iban_are_not_a_card() -> None:
    text = "Account PL17 5485 8354 0102 1516 2235 6319 (BIC DEUTDEFF)."
    assert [c for c, _ in found(text)] == ["pii.iban"]


def test_ssns() -> None:
    assert found("SSN 123-45-6789.") == [("pii.ssn", "123-45-6789")]
    assert found("SSN 123 45 6789") == [("pii.ssn", "123 45 6789")]
    for bad in ("000-12-3456", "666-12-3456", "912-12-3456", "123-00-4567", "123-45-0000"):
        assert found(f"SSN {bad}", "pii.ssn") == [], bad
    assert found("dates 2024-01-15, 123-45-67890, 123-45 6789", "pii.ssn") == []


@pytest.mark.parametrize(
    "value",
    ["192.168.1.10", "8.8.8.8", "2001:db8::8a2e:370:7334", "fe80::1", "::ffff:192.0.2.1"],
)
def test_ips(value: str) -> None:
    assert found(f"Host {value} is down.", "pii.ip") == [("pii.ip", value)]


@pytest.mark.parametrize(
    "text",
    [
        "octets 256.1.1.1 and 1.2.3",
        "version 1.2.3.4 and v2.0.0.1",
        "at 12:30:45 on 2024-01-01",
        "mac 00:1A:2B:3C:4D:5E",
        "C++ std::max and a::b, ::",
        "010.001.000.001",
    ],
)
def test_ip_lookalikes(text: str) -> None:
    assert found(text, "pii.ip") == []


def test_detector_rejects_unknown_categories() -> None:
    assert [f.category for f in PiiDetector(("pii.email",)).scan("a@b.io 8.8.8.8")] == ["pii.email"]
    with pytest.raises(ValueError, match=r"pii\.name"):
        PiiDetector(("pii.name",))


def _load_samples() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "bench" / "_pii_samples.py"
    spec = importlib.util.spec_from_file_location("_pii_samples", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("_pii_samples", module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_recall_on_generated_samples() -> None:
    pii_samples = _load_samples()
    hits: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    for s in pii_samples.samples(seed=20240501, per_category=50):
        totals[s.category] += 1
        hits[s.category] += any(
            f.category == s.category and f.start <= s.start and s.end <= f.end
            for f in DETECTOR.scan(s.text)
        )
    assert set(totals) == set(pii_samples.CATEGORIES) and sum(totals.values()) == 300
    recall = {c: hits[c] / totals[c] for c in totals}
    assert all(r >= 0.95 for r in recall.values()), recall
