"""One written form for quantities, times and dates, applied to premise and hypothesis alike before the NLI model.

Why: "330 m" and "330 metres", "9am to 5pm" and "09:00 to 17:00", "weekdays" and "Monday to Friday", "March 12, 1987"
and "12 March 1987" say the same thing, yet a cross-encoder sees different tokens and may call the rewording a
contradiction. Rewriting both sides into one form makes a format-only rewording a verbatim copy, and leaves a real
difference (330 feet, 18:00, 13 March) a difference. Every rule is meaning-preserving on its own (abbreviation ->
word, 12-hour -> 24-hour clock, date order), so nothing here can turn a false claim true. Declared per model in the
manifest (`input_normalization: canonical_v1`) because a model is measured — and may be trained — with it.
"""

from __future__ import annotations

import re
from functools import lru_cache

VERSION = "canonical_v1"

_UNIT_WORDS = {
    "km²": "square kilometres", "sq km": "square kilometres", "sq mi": "square miles", "km/h": "kilometres per hour",
    "kph": "kilometres per hour", "mph": "miles per hour", "km": "kilometres", "cm": "centimetres", "mm": "millimetres",
    "m": "metres", "mi": "miles", "ft": "feet", "kg": "kilograms", "g": "grams", "mg": "milligrams", "lb": "pounds",
    "lbs": "pounds", "t": "tonnes", "l": "litres", "ml": "millilitres", "ha": "hectares", "mw": "megawatts",
    "kw": "kilowatts", "gw": "gigawatts", "kwh": "kilowatt hours", "h": "hours", "hr": "hours", "hrs": "hours",
    "min": "minutes", "mins": "minutes", "s": "seconds", "sec": "seconds", "secs": "seconds", "°c": "degrees Celsius",
    "°f": "degrees Fahrenheit", "gb": "gigabytes", "mb": "megabytes", "tb": "terabytes", "kb": "kilobytes",
    "ghz": "gigahertz", "mhz": "megahertz",
}
_SPELLING = {"meters": "metres", "meter": "metre", "kilometers": "kilometres", "kilometer": "kilometre",
             "centimeters": "centimetres", "millimeters": "millimetres", "liters": "litres", "liter": "litre",
             "milliliters": "millilitres", "per cent": "percent", "tons": "tonnes", "metric tons": "tonnes"}
WORD_NUMBERS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
                "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
_NUMBER_WORDS = {w: str(i) for i, w in enumerate(WORD_NUMBERS) if i >= 2}

_MONTH_ABBR = {m[:3].lower(): m for m in MONTHS} | {"sept": "September"}
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_DAY_ABBR = {d[:3].lower(): d for d in _DAYS} | {"tues": "Tuesday", "thur": "Thursday", "thurs": "Thursday"}

_NUM = r"\d+(?:[.,]\d+)*"
_UNIT_RE = re.compile(r"(?<![\w.])(" + _NUM + r")\s?(" + "|".join(
    re.escape(u) for u in sorted(_UNIT_WORDS, key=len, reverse=True)) + r")(?![\w²/])", re.IGNORECASE)
_SPELLING_RE = re.compile(r"\b(" + "|".join(re.escape(w) for w in sorted(_SPELLING, key=len, reverse=True)) + r")\b",
                          re.IGNORECASE)
_PERCENT_RE = re.compile(r"(?<![\w.])(" + _NUM + r")\s?%")
_WORD_NUM_RE = re.compile(r"\b(" + "|".join(_NUMBER_WORDS) + r")\b(?=\s+[a-zA-Z])", re.IGNORECASE)
_THOUSANDS_RE = re.compile(r"(?<![\w.,])(\d{1,3}(?:,\d{3})+)(?![\d,]*\.\d)(?![\w,])")
_BARE_BIG_RE = re.compile(r"(?<![\w.,])(\d{5,})(?![\w.,]\d)")
_MILLION_RE = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)\s(million|billion)\b", re.IGNORECASE)
_CLOCK_12_RE = re.compile(r"\b(1[0-2]|0?[1-9])(?::([0-5]\d))?\s?([ap])\.?\s?m\b(?:\.(?=\s*[a-z0-9]))?",
                          re.IGNORECASE)  # the dot of "p.m." is kept when it also ends the sentence
_CLOCK_24_RE = re.compile(r"(?<![\d:.])([01]?\d|2[0-3]):([0-5]\d)(?![\d:])")
_NOON_RE = re.compile(r"\b(noon|midday)\b", re.IGNORECASE)
_MIDNIGHT_RE = re.compile(r"\bmidnight\b", re.IGNORECASE)
_DAY_RANGE_RE = re.compile(r"\b(" + "|".join(list(_DAY_ABBR) + [d.lower() for d in _DAYS]) + r")\.?\s*(?:-|–|—|to|"
                           r"through|thru|until)\s*(" + "|".join(list(_DAY_ABBR) + [d.lower() for d in _DAYS]) + r")\b",
                           re.IGNORECASE)
_WEEKDAYS_RE = re.compile(r"\b(?:on\s+)?(?:weekdays|every weekday|each weekday)\b", re.IGNORECASE)
_TIME_RANGE_RE = re.compile(r"(\d\d:\d\d)\s*(?:-|–|—)\s*(\d\d:\d\d)")
_MDY_RE = re.compile(r"\b(" + "|".join(MONTHS) + r"|" + "|".join(m.capitalize() for m in _MONTH_ABBR) + r")\.?\s+"
                     r"(\d{1,2})(?:st|nd|rd|th)?,?\s+(\d{4})\b")
_DMY_RE = re.compile(r"\b(\d{1,2})(?:st|nd|rd|th)?\s+(?:of\s+)?(" + "|".join(MONTHS) + r"|"
                     + "|".join(m.capitalize() for m in _MONTH_ABBR) + r")\.?,?\s+(\d{4})\b")
_ISO_RE = re.compile(r"\b(\d{4})-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])\b")


def _unit(m: re.Match[str]) -> str:
    number, unit = m.group(1), m.group(2)
    key = unit.lower()
    if unit in {"m", "M"} and unit == "M":
        return m.group(0)  # "5 M" is millions (or molar), not metres
    if key in {"s", "h", "t", "l", "g", "m", "min"} and not re.search(r"\s", m.group(0)) and key != "m":
        return m.group(0)  # "5s", "3h": too often something else when glued
    return f"{number} {_UNIT_WORDS[key]}"


def _clock12(m: re.Match[str]) -> str:
    hour, minute, half = int(m.group(1)), m.group(2) or "00", m.group(3).lower()
    hour = hour % 12 + (12 if half == "p" else 0)
    return f"{hour:02d}:{minute}"


def _month(name: str) -> str:
    return _MONTH_ABBR.get(name.lower()[:4].rstrip("."), None) or _MONTH_ABBR.get(name.lower()[:3], name)


def _day(name: str) -> str:
    return _DAY_ABBR.get(name.lower().rstrip(".")[:5], None) or _DAY_ABBR.get(name.lower()[:3], name.capitalize())


def _thousands(m: re.Match[str]) -> str:
    digits = m.group(1).replace(",", "")
    return digits if len(digits) == 4 else f"{int(digits):,}"


def _million(m: re.Match[str]) -> str:
    value = float(m.group(1)) * (1_000_000 if m.group(2).lower() == "million" else 1_000_000_000)
    return f"{int(round(value)):,}" if abs(value - round(value)) < 1e-6 else m.group(0)


@lru_cache(maxsize=8192)
def canonicalize(text: str) -> str:
    """The canonical form of `text` (idempotent; cached, since the same window meets many claims)."""
    s = _SPELLING_RE.sub(lambda m: _SPELLING[m.group(1).lower()], text)
    s = _PERCENT_RE.sub(lambda m: f"{m.group(1)} percent", s)
    s = _UNIT_RE.sub(_unit, s)
    s = _MILLION_RE.sub(_million, s)
    s = _THOUSANDS_RE.sub(_thousands, s)
    s = _BARE_BIG_RE.sub(lambda m: f"{int(m.group(1)):,}" if not re.fullmatch(r"(?:1[5-9]|20)\d\d", m.group(1))
                         else m.group(1), s)
    s = _WORD_NUM_RE.sub(lambda m: _NUMBER_WORDS[m.group(1).lower()], s)
    s = _CLOCK_12_RE.sub(_clock12, s)
    s = _CLOCK_24_RE.sub(lambda m: f"{int(m.group(1)):02d}:{m.group(2)}", s)
    s = _NOON_RE.sub("12:00", s)
    s = _MIDNIGHT_RE.sub("00:00", s)
    s = _TIME_RANGE_RE.sub(r"\1 to \2", s)
    s = _DAY_RANGE_RE.sub(lambda m: f"{_day(m.group(1))} to {_day(m.group(2))}", s)
    s = _WEEKDAYS_RE.sub("Monday to Friday", s)
    s = _ISO_RE.sub(lambda m: f"{int(m.group(3))} {MONTHS[int(m.group(2)) - 1]} {m.group(1)}", s)
    s = _MDY_RE.sub(lambda m: f"{int(m.group(2))} {_month(m.group(1))} {m.group(3)}", s)
    s = _DMY_RE.sub(lambda m: f"{int(m.group(1))} {_month(m.group(2))} {m.group(3)}", s)
    return s


NORMALIZERS = {VERSION: canonicalize}
