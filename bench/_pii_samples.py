"""A deterministic set of sentences with one PII value each, in the formats people write.

Used by the PII recall test and by the safety benchmark: ``samples(seed, per_category)``
returns ``Sample``s whose ``start``/``end`` mark the value inside ``text``. Every value is
valid (Luhn, mod-97, SSN ranges), so a miss is the detector's, not the generator's.
"""

from __future__ import annotations

import ipaddress
import random
import string
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["CATEGORIES", "Sample", "samples"]


@dataclass(frozen=True)
class Sample:
    category: str
    text: str
    start: int
    end: int


_FIRST = ["anna", "john", "li", "maria", "oluwaseun", "pierre", "sven", "yuki", "zoe", "omar"]
_LAST = ["smith", "garcia", "nguyen", "mueller", "okafor", "rossi", "tanaka", "kowalski", "ali"]
_DOMAINS = [
    "gmail.com",
    "example.co.uk",
    "mail.acme-corp.de",
    "cs.stanford.edu",
    "outlook.fr",
    "company.io",
    "sub.domain.example.org",
]


def _email(r: random.Random) -> str:
    first, last = r.choice(_FIRST), r.choice(_LAST)
    local = r.choice(
        [f"{first}.{last}", f"{first}_{last}{r.randint(1, 99)}", f"{first[0]}{last}", first]
    )
    if r.random() < 0.2:
        local += f"+{r.choice(['news', 'work', 'x'])}"
    return f"{local}@{r.choice(_DOMAINS)}"


def _digits(r: random.Random, n: int, first: str = "0123456789") -> str:
    return r.choice(first) + "".join(r.choice(string.digits) for _ in range(n - 1))


def _phone(r: random.Random) -> str:
    def d(n: int, first: str = "123456789") -> str:
        return _digits(r, n, first)

    area, exch, line = d(3, "23456789"), d(3, "23456789"), d(4, string.digits)
    formats = [
        f"+44 20 {d(4)} {d(4, string.digits)}",
        f"+44 (0)20 {d(4)} {d(4, string.digits)}",
        f"+1 ({area}) {exch}-{line}",
        f"+1 {area} {exch} {line}",
        f"+1-{area}-{exch}-{line}",
        f"+49 30 {d(6)}",
        f"+49 {d(3)} {d(7)}",
        f"+33 {d(1)} {d(2)} {d(2)} {d(2)} {d(2)}",
        f"+81 3-{d(4)}-{d(4)}",
        f"+61 2 {d(4)} {d(4)}",
        f"+91 {d(5, '6789')} {d(5, string.digits)}",
        f"+{r.choice(['44', '49', '33', '34'])}{d(9)}",
        f"({area}) {exch}-{line}",
        f"{area}-{exch}-{line}",
        f"{area}.{exch}.{line}",
        f"1-{area}-{exch}-{line}",
    ]
    return r.choice(formats)


def _luhn_complete(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        v = int(ch)
        if i % 2 == 0:
            v = v * 2 - 9 if v > 4 else v * 2
        total += v
    return body + str((10 - total % 10) % 10)


def _card(r: random.Random) -> str:
    prefix, length = r.choice(
        [
            ("4", 16),
            ("4", 16),
            (str(r.randint(51, 55)), 16),
            (str(r.randint(2221, 2720)), 16),
            (r.choice(["34", "37"]), 15),
            ("6011", 16),
            (str(r.randint(3528, 3589)), 16),
        ]
    )
    number = _luhn_complete(prefix + _digits(r, length - len(prefix) - 1, string.digits))
    style = r.choice(["space", "dash", "none"])
    if style == "none":
        return number
    sizes = [4, 6, 5] if length == 15 else [4, 4, 4, 4]
    groups, pos = [], 0
    for size in sizes:
        groups.append(number[pos : pos + size])
        pos += size
    return (" " if style == "space" else "-").join(groups)


# Country, then the BBAN as (kind, length) pieces: "n" digits, "a" capital letters.
_IBAN_FORMATS = {
    "DE": [("n", 18)],
    "GB": [("a", 4), ("n", 14)],
    "FR": [("n", 23)],
    "NL": [("a", 4), ("n", 10)],
    "ES": [("n", 20)],
    "IT": [("a", 1), ("n", 22)],
    "CH": [("n", 17)],
    "BE": [("n", 12)],
    "AT": [("n", 16)],
    "PL": [("n", 24)],
}


def _iban(r: random.Random) -> str:
    country = r.choice(sorted(_IBAN_FORMATS))
    bban = "".join(
        "".join(
            r.choice(string.ascii_uppercase if kind == "a" else string.digits) for _ in range(n)
        )
        for kind, n in _IBAN_FORMATS[country]
    )
    numeric = int("".join(str(int(ch, 36)) for ch in bban + country + "00"))
    iban = f"{country}{98 - numeric % 97:02d}{bban}"
    if r.random() < 0.5:
        return iban
    return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))


def _ssn(r: random.Random) -> str:
    area = r.choice([a for a in range(1, 900) if a != 666])
    sep = "-" if r.random() < 0.85 else " "
    return f"{area:03d}{sep}{r.randint(1, 99):02d}{sep}{r.randint(1, 9999):04d}"


def _ip(r: random.Random) -> str:
    if r.random() < 0.6:
        return str(ipaddress.IPv4Address(r.getrandbits(32)))
    address = ipaddress.IPv6Address(r.getrandbits(128) if r.random() < 0.5 else 0x2001 << 112)
    if address.packed[-1] == 0:
        address = ipaddress.IPv6Address(int(address) + r.randint(1, 0xFFFF))
    return address.compressed if r.random() < 0.7 else address.exploded


_TEMPLATES = {
    "pii.email": ["Please write to {} about the invoice.", "Contact: {}", "cc {}, thanks!"],
    "pii.phone": ["Call me on {} after 6pm.", "Phone: {}", "My number is {}, text first."],
    "pii.card": ["Charge card {} for the order.", "Card number: {} exp 09/27", "use {} please"],
    "pii.iban": ["Transfer to IBAN {} today.", "IBAN: {}", "Account {} (BIC DEUTDEFF)."],
    "pii.ssn": ["My SSN is {}.", "SSN: {}", "social security number {} on file"],
    "pii.ip": ["The server at {} is down.", "ssh admin@{} failed", "Blocked IP: {}."],
}
_VALUES: dict[str, Callable[[random.Random], str]] = {
    "pii.email": _email,
    "pii.phone": _phone,
    "pii.card": _card,
    "pii.iban": _iban,
    "pii.ssn": _ssn,
    "pii.ip": _ip,
}
CATEGORIES = tuple(_VALUES)


def samples(seed: int = 20240501, per_category: int = 50) -> list[Sample]:
    r = random.Random(seed)
    out = []
    for category, make in _VALUES.items():
        for _ in range(per_category):
            value = make(r)
            before, after = r.choice(_TEMPLATES[category]).split("{}")
            text = before + value + after
            out.append(Sample(category, text, len(before), len(before) + len(value)))
    return out
