"""Key fields of a contract, normalised: dates to ISO 8601, durations to months or days, money to numbers.

Pure functions over clause text, used by :mod:`workers.enrich.contracts`. Each parser takes the
first value it can read and returns None when there is none; none of them raises on odd input.

>>> parse_date("the 8th day of May, 2014")
'2014-05-08'
>>> duration_months("for a period of two (2) years")
24
>>> governing_law("governed by the laws of the State of New York, without regard to")
'New York'
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Duration", "duration_days", "duration_months", "governing_law", "money_amounts", "parse_date",
           "parse_duration", "parties"]

_MONTHS = {name: i + 1 for i, name in enumerate(
    ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
     "november", "december"])}
_MONTHS.update({name[:3]: num for name, num in list(_MONTHS.items())})
_MONTHS["sept"] = 9
_MONTH = r"(?P<month>jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|" \
         r"sept?(?:ember)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
_DAY = r"(?P<day>\d{1,2})(?:st|nd|rd|th)?"
_YEAR = r"(?P<year>(?:19|20)\d{2})"
_DATE_FORMS = [
    re.compile(rf"\b{_MONTH}\s+{_DAY},?\s+{_YEAR}\b", re.I),  # May 8, 2014
    re.compile(rf"\b{_DAY}\s+(?:day\s+of\s+)?{_MONTH},?\s+(?:of\s+)?{_YEAR}\b", re.I),  # 8th day of May, 2014
    re.compile(r"\b(?P<year>(?:19|20)\d{2})-(?P<month>\d{1,2})-(?P<day>\d{1,2})\b"),  # 2014-05-08
    re.compile(r"\b(?P<month>\d{1,2})/(?P<day>\d{1,2})/(?P<year>(?:19|20)?\d{2})\b"),  # 5/8/14 (US order)
    re.compile(rf"\b{_MONTH},?\s+{_YEAR}\b", re.I),  # May 2014 (day unknown: the first)
]

_NUMBER_WORDS = {w: i for i, w in enumerate(
    ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
     "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"])}
_NUMBER_WORDS.update({"thirty": 30, "forty": 40, "forty-five": 45, "fifty": 50, "sixty": 60, "seventy": 70,
                      "eighty": 80, "ninety": 90, "hundred": 100, "one hundred twenty": 120,
                      "one hundred eighty": 180, "a": 1, "an": 1})
_UNIT_DAYS = {"day": 1, "business day": 1, "week": 7, "month": 30, "year": 365}
_UNIT_MONTHS = {"day": 1 / 30, "business day": 1 / 21, "week": 12 / 52, "month": 1, "year": 12}
_NUM_WORD = r"(?:one hundred (?:twenty|eighty)|forty-five|" + "|".join(
    sorted((w for w in _NUMBER_WORDS if " " not in w and w != "forty-five"), key=len, reverse=True)) + ")"
# "two (2) years", "thirty (30) calendar days", "12 months", "one year", "sixty days'"
_DURATION = re.compile(
    rf"\b(?:(?P<word>{_NUM_WORD})(?:[\s-]*\(\s*(?P<paren>\d{{1,4}})\s*\))?|(?P<digits>\d{{1,4}}))"
    r"[\s-]*(?:full\s+|consecutive\s+|calendar\s+|additional\s+)*(?P<unit>business\s+days?|days?|weeks?|months?|years?)\b",
    re.I,
)
_MONEY = re.compile(
    r"(?:(?P<cur>US\$|U\.S\.\s?\$|\$|€|£|USD|EUR|GBP)\s?(?P<num>\d{1,3}(?:,\d{3})+|\d+)(?:\.(?P<cents>\d{1,2}))?"
    r"(?:\s*(?P<scale>million|billion|thousand))?)"
    r"|(?:(?P<num2>\d{1,3}(?:,\d{3})+|\d+)(?:\.\d{1,2})?\s*(?P<scale2>million|billion|thousand)?\s*"
    r"(?P<cur2>dollars|US dollars|euros?|pounds))",
    re.I,
)
_SCALES = {"thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}
_CURRENCIES = {"$": "USD", "us$": "USD", "u.s.$": "USD", "u.s. $": "USD", "usd": "USD", "dollars": "USD",
               "us dollars": "USD", "€": "EUR", "eur": "EUR", "euro": "EUR", "euros": "EUR", "£": "GBP",
               "gbp": "GBP", "pounds": "GBP"}
_LAW = re.compile(
    r"(?i:\blaws?\s+(?:of|in)\s+(?:and\s+for\s+)?(?:the\s+)?"
    r"(?:(?:state|commonwealth|province|republic|kingdom|people's\s+republic)\s+of\s+)?)"
    r"(?P<place>[A-Z][A-Za-z]*\.?(?:[ -](?:of\s+)?[A-Z][A-Za-z]*\.?){0,3})",
)
_LAW_STOP = re.compile(r"(?:\.\s|\s+(?:without|excluding|applicable|including|and|except|as|in|which|that|to|"
                       r"shall|will|United\s+States)\b).*$", re.I | re.S)
_NOT_PLACES = frozenset({"this", "such", "any", "the", "applicable", "that", "each", "all"})
_PARTY = re.compile(
    r"\b(?:by\s+and\s+)?between\s*:?\s+(?P<first>.{3,160}?)(?:,|\s)\s*(?:\(|and\s|AND\s)"
    r".{0,400}?\b(?:and|AND)\s+(?P<second>[A-Z0-9][^,;(]{2,120})",
    re.S,
)
_DEFINED_PARTY = re.compile(r"\((?:the\s+|each\s+a\s+)?(?:hereinafter\s+(?:referred\s+to\s+as\s+|called\s+)?)?"
                            r"[\"“']\s*(?P<name>[A-Z][\w.&' -]{1,40}?)\s*[\"”']\s*\)")


def parse_date(text: str) -> str | None:
    """The first calendar date in ``text`` as ``YYYY-MM-DD``; None if there is none (or it is not a real date)."""
    best: tuple[int, str] | None = None
    for form in _DATE_FORMS:
        for m in form.finditer(text):
            iso = _iso(m)
            if iso and (best is None or m.start() < best[0]):
                best = (m.start(), iso)
                break
    return best[1] if best else None


def _iso(m: re.Match[str]) -> str | None:
    raw_month = m.group("month").lower().rstrip(".")
    month = int(raw_month) if raw_month.isdigit() else _MONTHS.get(raw_month) or _MONTHS.get(raw_month[:3])
    day = int(m.groupdict().get("day") or 1)
    year = int(m.group("year"))
    year += 2000 if year < 50 else 1900 if year < 100 else 0
    if not month or not 1 <= month <= 12 or not 1 <= day <= 31:
        return None
    return f"{year:04d}-{month:02d}-{day:02d}"


@dataclass(frozen=True)
class Duration:
    """A span of time as written: ``amount`` of ``unit`` (day, business day, week, month, year)."""

    amount: int
    unit: str

    @property
    def months(self) -> int:
        return round(self.amount * _UNIT_MONTHS[self.unit])

    @property
    def days(self) -> int:
        return self.amount * _UNIT_DAYS[self.unit]


def parse_duration(text: str) -> Duration | None:
    """The first duration in ``text`` ("two (2) years", "30 days", "one year"); the digits win over words."""
    for m in _DURATION.finditer(text):
        if m.group("paren"):
            amount = int(m.group("paren"))
        elif m.group("digits"):
            amount = int(m.group("digits"))
        else:
            amount = _NUMBER_WORDS.get(m.group("word").lower().replace("  ", " "), 0)
        if amount <= 0:
            continue
        unit = re.sub(r"\s+", " ", m.group("unit").lower()).rstrip("s")
        return Duration(amount, unit)
    return None


def duration_months(text: str) -> int | None:
    """The first duration in ``text`` in whole months ("two (2) years" -> 24), None if there is none."""
    found = parse_duration(text)
    return found.months if found else None


def duration_days(text: str) -> int | None:
    """The first duration in ``text`` in days ("ninety (90) days" -> 90, "one year" -> 365)."""
    found = parse_duration(text)
    return found.days if found else None


def money_amounts(text: str) -> list[str]:
    """Amounts of money as ``"<CUR> <number>"`` ("$1.5 million" -> "USD 1500000"), in order, without repeats."""
    out: list[str] = []
    for m in _MONEY.finditer(text):
        num = (m.group("num") or m.group("num2")).replace(",", "")
        cents = m.group("cents") or ""
        scale = (m.group("scale") or m.group("scale2") or "").lower()
        currency = _CURRENCIES.get(re.sub(r"\s+", " ", (m.group("cur") or m.group("cur2")).lower()), "USD")
        value = float(f"{num}.{cents}" if cents else num) * _SCALES.get(scale, 1)
        amount = f"{currency} {value:.2f}".removesuffix(".00")
        if amount not in out:
            out.append(amount)
    return out


def governing_law(text: str) -> str | None:
    """The jurisdiction whose law governs, from a governing-law clause ("the State of Delaware" -> "Delaware")."""
    for m in _LAW.finditer(text):
        place = _LAW_STOP.sub("", m.group("place")).strip(" .,")
        if place and place.lower() not in _NOT_PLACES:
            return place.title() if place.isupper() else place
    return None


def parties(text: str) -> list[str]:
    """Party names from a preamble: "between A ... and B", else the quoted names defined in parentheses."""
    head = re.sub(r"\s+", " ", text[:3000])
    names: list[str] = []
    if (m := _PARTY.search(head)) is not None:
        names = [_clean_party(m.group("first")), _clean_party(m.group("second"))]
    if not all(names):
        names = [m.group("name").strip() for m in _DEFINED_PARTY.finditer(head)][:4]
    return [n for n in dict.fromkeys(names) if n]


def _clean_party(name: str) -> str:
    name = re.split(r"\s*(?:,\s*(?:a|an)\s|\(|,\s*with\s|,\s*having\s|,\s*located\s|\swhose\s)", name)[0]
    name = name.strip(" ,.:;\"“”'")
    return name if 2 <= len(name) <= 100 else ""
