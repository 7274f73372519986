"""Personal data found by pattern and checksum: e-mail addresses, phone numbers, payment
cards, IBANs, US social security numbers and IP addresses.

Each category is a cheap candidate regex followed by a validator, so that precision comes
from structure (Luhn, mod-97, octet ranges, numbering-plan rules) rather than from ever
longer expressions. Every regex starts only at a token boundary and has no nested unbounded
repetition, so a scan stays linear in the text length.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator

from shardgate.safety.base import Finding

__all__ = [
    "PII_CATEGORIES",
    "PiiDetector",
    "find_cards",
    "find_emails",
    "find_ibans",
    "find_ips",
    "find_phones",
    "find_ssns",
    "iban_valid",
    "luhn_valid",
]

_EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.){1,8}[A-Za-z]{2,24}(?![\w-])"
)

# International numbers must start with "+"; groups are split by one space, dot or dash, and
# one group may be an area code in parentheses ("+1 (415) 555-2671", "+44 (0)20 7946 0958").
_PHONE_INTL = re.compile(
    r"(?<![\w+])\+[1-9]\d{0,14}"
    r"(?:(?:[ .-]|[ .-]?\(\d{1,4}\)[ .-]?)\d{1,8}){0,7}"
    r"(?![\w-]|[.,]\d)"
)
# National North American numbers need separators and valid NANP area and exchange codes
# (first digit 2-9); ten bare digits are left alone, they are far more often an order number.
_PHONE_NANP = re.compile(
    r"(?<![\w+.-])(?:\+?1[ .-])?(?:\([2-9]\d{2}\) ?|[2-9]\d{2}[ .-])[2-9]\d{2}[ .-]\d{4}"
    r"(?![\w-]|[.,]\d)"
)
_DIGIT_RUN = re.compile(r"(?<![\w.,-])\d+(?:[ -]\d+)*(?![\w-]|[.,]\d)")
_SSN = re.compile(r"(?<![\w.-])(\d{3})([- ])(\d{2})\2(\d{4})(?![\w-]|[.,]\d)")
_IBAN_START = re.compile(r"(?<![A-Za-z0-9])([A-Z]{2})(\d{2}) ?[A-Z0-9]")
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?![\w]|\.\w)")
_VERSION_WORD = re.compile(r"(?i)\b(?:version|ver\.?|release|build|v)\s*$")
_IPV6 = re.compile(r"(?<![\w:.])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:\.\d{1,3}){0,3}")

# IBAN length per country (ISO 13616 registry); an unknown country code is not an IBAN.
_IBAN_LENGTHS = {
    cc: int(n)
    for cc, n in re.findall(
        r"([A-Z]{2})(\d\d)",
        "AD24 AE23 AL28 AT20 AZ28 BA20 BE16 BG22 BH22 BR29 BY28 CH21 CR22 CY28 CZ24 DE22 DK18 "
        "DO28 EE20 EG29 ES24 FI18 FO18 FR27 GB22 GE22 GI23 GL18 GR27 GT28 HR21 HU28 IE22 IL23 "
        "IQ23 IS26 IT27 JO30 KW30 KZ20 LB28 LC32 LI21 LT20 LU20 LV21 MC27 MD24 ME22 MK19 MR27 "
        "MT31 MU30 NL18 NO15 PK24 PL28 PS29 PT25 QA29 RO24 RS22 SA24 SC31 SE24 SI19 SK24 SM27 "
        "ST25 SV28 TL23 TN24 TR26 UA29 VA22 VG24 XK20",
    )
}

PII_CATEGORIES = ("pii.email", "pii.phone", "pii.card", "pii.iban", "pii.ssn", "pii.ip")


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_valid(iban: str) -> bool:
    """Country length and the ISO 7064 mod-97 check of a compact, upper-case IBAN."""
    if _IBAN_LENGTHS.get(iban[:2]) != len(iban) or not iban.isalnum():
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _card_prefix_plausible(digits: str) -> bool:
    """Issuer ranges in use (Visa, Mastercard, Amex, Diners, JCB, Discover, UnionPay,
    Maestro); a Luhn-valid number outside them is far more likely an ID or a reference."""
    n = len(digits)
    first2, first4 = int(digits[:2]), int(digits[:4])
    if digits[0] == "4":
        return n in (13, 16, 19)
    if 51 <= first2 <= 55 or 2221 <= first4 <= 2720:
        return n == 16
    if first2 in (34, 37):
        return n == 15
    if first2 in (30, 36, 38, 39):
        return 14 <= n <= 19
    if 3528 <= first4 <= 3589:
        return 16 <= n <= 19
    if digits[0] == "6" or first2 == 50 or 56 <= first2 <= 58:
        return 12 <= n <= 19
    return False


def _card_valid(groups: list[str]) -> bool:
    digits = "".join(groups)
    if not 13 <= len(digits) <= 19 or len(set(digits)) < 2:
        return False
    # Printed cards are grouped in blocks of 3-6; "1 2 3 ..." is a list, not a card.
    if len(groups) > 1 and any(not 3 <= len(g) <= 6 for g in groups):
        return False
    return _card_prefix_plausible(digits) and luhn_valid(digits)


def find_cards(text: str) -> Iterator[Finding]:
    for m in _DIGIT_RUN.finditer(text):
        run = m.group()
        seps = {ch for ch in run if not ch.isdigit()}
        if len(seps) > 1:
            continue  # "1234-5678 9012 ..." mixes separators: a table row, not a card
        groups = run.split(seps.pop()) if seps else [run]
        yield from _cards_in_groups(groups, m.start())


def _cards_in_groups(groups: list[str], offset: int) -> Iterator[Finding]:
    """A run of digit groups may hold a card among other numbers ("ref 12 4111 1111 ...").
    Try windows of whole groups, longest first from each start, and take the first valid."""
    starts = [0]
    for g in groups[:-1]:
        starts.append(starts[-1] + len(g) + 1)
    i = 0
    while i < len(groups):
        stop, digits = i, 0
        # Windows hold 19 digits at most, and no group under 3 digits joins a longer window.
        while stop < len(groups) and digits + len(groups[stop]) <= 19:
            if len(groups[stop]) < 3 and stop > i:
                break
            digits += len(groups[stop])
            stop += 1
        for j in range(stop, i, -1):
            if _card_valid(groups[i:j]):
                end = starts[j - 1] + len(groups[j - 1])
                yield Finding("pii.card", offset + starts[i], offset + end, 0.95)
                i = j - 1
                break
        i += 1


def find_emails(text: str) -> Iterator[Finding]:
    for m in _EMAIL.finditer(text):
        yield Finding("pii.email", m.start(), m.end(), 0.99)


def find_phones(text: str) -> Iterator[Finding]:
    international = [
        m.span() for m in _PHONE_INTL.finditer(text) if 8 <= sum(map(str.isdigit, m.group())) <= 15
    ]
    for start, end in international:
        yield Finding("pii.phone", start, end, 0.9)
    for m in _PHONE_NANP.finditer(text):
        if not any(s <= m.start() < e for s, e in international):
            yield Finding("pii.phone", m.start(), m.end(), 0.85)


def find_ibans(text: str) -> Iterator[Finding]:
    for m in _IBAN_START.finditer(text):
        length = _IBAN_LENGTHS.get(m.group(1))
        if length is None:
            continue
        end = _iban_end(text, m.start(), length)
        if end is not None:
            compact = text[m.start() : end].replace(" ", "")
            if iban_valid(compact):
                yield Finding("pii.iban", m.start(), end, 0.99)


def _iban_end(text: str, start: int, length: int) -> int | None:
    """Where ``length`` alphanumerics, single spaces allowed between them, end; None when
    the text runs out first or the IBAN runs on into a longer word."""
    count, i = 0, start
    while i < len(text) and count < length:
        ch = text[i]
        if ch.isascii() and (ch.isdigit() or ch.isupper()):
            count += 1
        elif not (ch == " " and count and i + 1 < len(text) and text[i + 1] != " "):
            return None
        i += 1
    if count < length or (i < len(text) and text[i].isalnum()):
        return None
    return i


def find_ssns(text: str) -> Iterator[Finding]:
    for m in _SSN.finditer(text):
        area, group, serial = m.group(1), m.group(3), m.group(4)
        if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
            continue
        yield Finding("pii.ssn", m.start(), m.end(), 0.9 if m.group(2) == "-" else 0.7)


def find_ips(text: str) -> Iterator[Finding]:
    v6 = list(_find_ipv6(text))
    yield from v6
    for m in _IPV4.finditer(text):
        if any(f.start <= m.start() < f.end for f in v6):
            continue  # the tail of "::ffff:192.0.2.1"
        if _VERSION_WORD.search(text, max(0, m.start() - 12), m.start()):
            continue  # "version 1.2.3.4" is a four-part version, not an address
        yield Finding("pii.ip", m.start(), m.end(), 0.9)


def _find_ipv6(text: str) -> Iterator[Finding]:
    for m in _IPV6.finditer(text):
        candidate = m.group()
        # A decimal digit and two groups keep out "::", "a::b" and "std::max"-like code.
        if sum(1 for g in re.split(r"[:.]", candidate) if g) < 2 or not any(
            ch.isdigit() for ch in candidate
        ):
            continue
        try:
            ipaddress.IPv6Address(candidate)
        except ValueError:
            continue
        yield Finding("pii.ip", m.start(), m.end(), 0.9)


_FINDERS: dict[str, Callable[[str], Iterator[Finding]]] = {
    "pii.email": find_emails,
    "pii.phone": find_phones,
    "pii.card": find_cards,
    "pii.iban": find_ibans,
    "pii.ssn": find_ssns,
    "pii.ip": find_ips,
}


class PiiDetector:
    """All pattern PII categories, or the ones named in ``categories``."""

    name = "pii"

    def __init__(self, categories: tuple[str, ...] = PII_CATEGORIES) -> None:
        unknown = set(categories) - set(_FINDERS)
        if unknown:
            raise ValueError(f"unknown PII categories: {sorted(unknown)}")
        self._finders = [_FINDERS[c] for c in categories]

    def scan(self, text: str) -> list[Finding]:
        found = [f for find in self._finders for f in find(text)]
        # Digit groups inside an IBAN can pass Luhn by chance (1 in 10): the IBAN explains them.
        ibans = [(f.start, f.end) for f in found if f.category == "pii.iban"]
        return [
            f
            for f in found
            if f.category != "pii.card" or not any(s <= f.start and f.end <= e for s, e in ibans)
        ]
