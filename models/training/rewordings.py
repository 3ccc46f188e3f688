"""Meaning-preserving rewordings of a sentence, and their minimal-change wrong twins — labelled by construction.

Why: a judge that saw only verbatim copies as positives and one-token edits as negatives learns "any rewording is a
contradiction" and flags "330 m" for "330 metres". Each function here returns a rewording that a careful reader
accepts as entailed by the original (units spelled out or abbreviated, an exact unit conversion, number and date
formats, a lead adverbial moved to the end, an apposition stated on its own, passive made active, a hypernym), or —
the `wrong_*` functions — the same surface change with the fact broken (a wrong conversion, a swapped unit, a
shifted date). They return None where the sentence offers nothing to reword. Pure Python, deterministic for an rng.
"""

from __future__ import annotations

import random
import re

from guardrail_models.canonical import MONTHS, WORD_NUMBERS

# (long form, abbreviation). The long form matches singular and plural; only forms after a number are touched.
UNITS: tuple[tuple[str, str], ...] = (
    ("square kilometres", "km²"), ("square kilometers", "km²"), ("square miles", "sq mi"),
    ("kilometres per hour", "km/h"), ("kilometers per hour", "km/h"), ("miles per hour", "mph"),
    ("kilometres", "km"), ("kilometers", "km"), ("centimetres", "cm"), ("centimeters", "cm"),
    ("millimetres", "mm"), ("millimeters", "mm"), ("metres", "m"), ("meters", "m"),
    ("miles", "mi"), ("feet", "ft"), ("inches", "in"), ("kilograms", "kg"), ("grams", "g"),
    ("milligrams", "mg"), ("pounds", "lb"), ("tonnes", "t"), ("litres", "L"), ("liters", "L"), ("millilitres", "ml"),
    ("hectares", "ha"), ("acres", "ac"), ("megawatts", "MW"), ("kilowatts", "kW"), ("per cent", "%"), ("percent", "%"),
    ("hours", "h"), ("minutes", "min"), ("seconds", "s"), ("degrees Celsius", "°C"),
)
_UNREAD = {"in", "t", "ac"}  # written when abbreviating, never read as a unit: "in" is mostly the preposition
_SINGULAR = {"feet": "foot", "inches": "inch"}
# Unit families with exact factors to a base unit: a conversion inside one family is an entailed rewording.
FACTORS: dict[str, tuple[str, float]] = {
    "km": ("length", 1000.0), "m": ("length", 1.0), "cm": ("length", 0.01), "mm": ("length", 0.001),
    "kg": ("mass", 1000.0), "g": ("mass", 1.0), "mg": ("mass", 0.001),
    "h": ("time", 3600.0), "min": ("time", 60.0), "s": ("time", 1.0),
    "L": ("volume", 1000.0), "ml": ("volume", 1.0), "MW": ("power", 1000.0), "kW": ("power", 1.0),
}
_LONG = {"km": "kilometres", "m": "metres", "cm": "centimetres", "mm": "millimetres", "kg": "kilograms",
         "g": "grams", "mg": "milligrams", "h": "hours", "min": "minutes", "s": "seconds", "L": "litres",
         "ml": "millilitres", "MW": "megawatts", "kW": "kilowatts"}
# Swapping a unit for another of a different size breaks the fact while keeping the number.
UNIT_SWAPS = {"metres": "feet", "feet": "metres", "kilometres": "miles", "miles": "kilometres", "km": "mi", "mi": "km",
              "m": "ft", "ft": "m", "kilograms": "pounds", "pounds": "kilograms", "kg": "lb", "lb": "kg",
              "hours": "minutes", "minutes": "hours", "h": "min", "min": "h", "hectares": "acres", "acres": "hectares",
              "°C": "°F", "degrees Celsius": "degrees Fahrenheit", "seconds": "minutes"}

_NUM = r"(?<![\w.,])(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)"
_DMY = re.compile(r"\b([1-9]|[12]\d|3[01]) (" + "|".join(MONTHS) + r"),? (1[5-9]\d\d|20\d\d)\b")
_MDY = re.compile(r"\b(" + "|".join(MONTHS) + r") ([1-9]|[12]\d|3[01]), (1[5-9]\d\d|20\d\d)\b")
_LEAD = re.compile(r"^(?P<lead>(?:In|On|During|By|After|Before)\s(?=[^,]*(?:\d|war|War|" + "|".join(MONTHS) + r"))"
                   r"[^,]{2,40}),\s+(?P<rest>[a-zA-Z][^,]*)\.$")
_HEAD = r"(?P<head>(?!(?:In|On|At|By|For|From|With|After|Before|During|However|But|And)\b)(?:The\s)?[A-Z][\w'\-]*(?<!ly)" \
        r"(?:\s[A-Z][\w'\-]*){0,3})"
_APPOSITION = re.compile(r"^" + _HEAD + r", (?P<app>(?:a|an|the)\s[^,]{3,60}), (?P<verb>\w+ed|is|was|has|had|won|wrote|"
                         r"made|built|became|led|left|took|gave|lives|lived|works|worked)(?P<rest>\s[^,]*)\.$")
_RELATIVE = re.compile(r"^" + _HEAD + r", (?:who|which) (?P<rel>[^,]{4,80}),"
                       r" (?P<main>[^,]{4,120})\.$")
_PASSIVE = re.compile(r"^(?P<obj>(?:The|A|An|This|His|Her|Its|Their)\s[^,]{2,60}?) (?:was|were) (?P<verb>\w+) by "
                      r"(?P<agent>[A-Z][\w'\-]*(?:\s(?:of\s|de\s|van\s)?[A-Z][\w'\-]*){0,3})(?P<tail>(?:\sin\s\d{4})?)\.$")
_IRREGULAR_PAST = {"written": "wrote", "drawn": "drew", "taken": "took", "given": "gave", "chosen": "chose",
                   "sung": "sang", "begun": "began", "driven": "drove", "eaten": "ate", "seen": "saw", "known": "knew",
                   "shown": "showed", "thrown": "threw", "grown": "grew", "ridden": "rode", "spoken": "spoke",
                   "stolen": "stole", "broken": "broke", "frozen": "froze", "forgotten": "forgot", "beaten": "beat",
                   "won": "won", "built": "built", "made": "made", "held": "held", "led": "led", "founded": "founded",
                   "sold": "sold", "bought": "bought", "found": "found", "told": "told", "paid": "paid", "sent": "sent",
                   "taught": "taught", "brought": "brought", "caught": "caught", "fought": "fought", "kept": "kept",
                   "left": "left", "lost": "lost", "met": "met", "read": "read", "run": "ran", "set": "set",
                   "struck": "struck", "hit": "hit", "shot": "shot", "defeated": "defeated"}
HYPERNYMS = {
    "dog": "animal", "cat": "animal", "horse": "animal", "cow": "animal", "sheep": "animal", "wolf": "animal",
    "eagle": "bird", "owl": "bird", "sparrow": "bird", "parrot": "bird", "salmon": "fish", "trout": "fish",
    "oak": "tree", "pine": "tree", "maple": "tree", "rose": "flower", "tulip": "flower", "car": "vehicle",
    "truck": "vehicle", "bus": "vehicle", "bicycle": "vehicle", "ship": "vessel", "frigate": "warship",
    "destroyer": "warship", "battleship": "warship", "cruiser": "warship", "submarine": "vessel", "guitar": "instrument",
    "piano": "instrument", "violin": "instrument", "cathedral": "church",
    "castle": "building", "rifle": "weapon", "pistol": "weapon", "sword": "weapon",
    "novel": "book", "album": "record", "song": "piece of music", "hurricane": "storm", "typhoon": "storm",
    "cyclone": "storm", "senator": "politician",
    "apple": "fruit", "banana": "fruit", "potato": "vegetable", "carrot": "vegetable", "laptop": "computer",
    "smartphone": "phone", "aspirin": "medicine", "ibuprofen": "medicine", "penicillin": "antibiotic",
    "Monday": "weekday", "Tuesday": "weekday", "Wednesday": "weekday", "Thursday": "weekday", "Friday": "weekday",
}


def _is_number(token: str) -> bool:
    return bool(re.fullmatch(r"\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?", token))


def _value(token: str) -> float:
    return float(token.replace(",", ""))


def format_number(v: float, comma: bool = True) -> str:
    """A plain rendering: integers with thousands separators, otherwise up to 3 decimals without trailing zeros."""
    if abs(v - round(v)) < 1e-9:
        return f"{int(round(v)):,}" if comma else str(int(round(v)))
    return f"{v:.3f}".rstrip("0").rstrip(".")


def _unit_pattern(unit: str) -> re.Pattern[str]:
    forms = {unit}
    if len(unit) > 3 and unit.endswith("s"):
        forms.add(_SINGULAR.get(unit, unit[:-1]))
    alt = "|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True))
    tail = r"(?![\w²/])" if unit[-1].isalnum() else ""
    return re.compile(_NUM + r"(\s?)(" + alt + r")" + tail)


def _unit_mentions(sentence: str) -> list[tuple[re.Match[str], str, str]]:
    """(match, long form, abbreviation) for every number followed by a known unit, long or short."""
    found: list[tuple[re.Match[str], str, str]] = []
    taken: list[tuple[int, int]] = []
    for long, short in UNITS:
        for form in (long, short):
            for m in _unit_pattern(form).finditer(sentence):
                if any(m.start() < e and s < m.end() for s, e in taken) or _in_range(sentence, m):
                    continue
                if form == short and (short in _UNREAD or (short in {"m", "s", "g", "h", "L"} and not m.group(2))):
                    continue  # "$30,000 in bonds", "5s", "3m" are too often something else
                if re.match(r"\s\d", sentence[m.end():m.end() + 2]) or re.search(r"\d\s?[a-z]+\s$",
                                                                                  sentence[:m.start()]):
                    continue  # "20 minutes 53 seconds": one part of a compound quantity
                found.append((m, long, short))
                taken.append((m.start(), m.end()))
    return sorted(found, key=lambda t: t[0].start())


def _in_range(sentence: str, m: re.Match[str]) -> bool:
    """Part of "3 to 9 cm" or "18 – 49": rewriting one end of a range alone changes its meaning."""
    before, after = sentence[max(0, m.start() - 4):m.start()], sentence[m.end():m.end() + 4]
    return bool(re.search(r"(?:to|–|-|and)\s?$", before) or re.match(r"\s?(?:to|–|-)", after))


def _sub(sentence: str, m: re.Match[str], new: str) -> str:
    return sentence[:m.start()] + new + sentence[m.end():]


def unit_abbreviation(sentence: str, rng: random.Random) -> str | None:
    """"330 metres" <-> "330 m": the same quantity written the other way."""
    mentions = _unit_mentions(sentence)
    if not mentions:
        return None
    m, long, short = rng.choice(mentions)
    number, written = m.group(1), m.group(3)
    if written in (long, _SINGULAR.get(long, long[:-1])):
        new = f"{number}{'' if short in {'%', '°C'} else ' '}{short}"
    else:
        new = f"{number} {long if _value(number) != 1 else _SINGULAR.get(long, long.rstrip('s'))}"
    return _sub(sentence, m, new)


def _convertible(sentence: str) -> list[tuple[re.Match[str], str]]:
    out = []
    for m, long, short in _unit_mentions(sentence):
        if short in FACTORS:
            out.append((m, short))
    return out


def _convert(value: float, unit: str, rng: random.Random) -> tuple[float, str] | None:
    family, factor = FACTORS[unit]
    targets = [u for u, (f, _) in FACTORS.items() if f == family and u != unit]
    rng.shuffle(targets)
    for target in targets:
        v = value * factor / FACTORS[target][1]
        if 0.1 <= v <= 100_000 and abs(v * 1000 - round(v * 1000)) < 1e-6:
            return v, target
    return None


def unit_conversion(sentence: str, rng: random.Random, *, wrong: bool = False) -> str | None:
    """An exact conversion inside one unit family ("1.28 km" -> "1,280 metres", "2 hours" -> "120 minutes"); with
    `wrong`, the conversion is off by a factor of ten — the same shape, a false quantity."""
    options = _convertible(sentence)
    if not options:
        return None
    m, unit = rng.choice(options)
    made = _convert(_value(m.group(1)), unit, rng)
    if made is None:
        return None
    v, target = made
    if wrong:
        v = v * rng.choice([10, 0.1, 100])
        if v < 0.01:
            return None
    spelled = _LONG[target] if rng.random() < 0.6 else target
    if spelled == _LONG[target] and v == 1:
        spelled = spelled[:-1]
    return _sub(sentence, m, f"{format_number(v)} {spelled}")


def unit_swap(sentence: str, rng: random.Random) -> str | None:
    """The number kept, the unit changed to one of a different size: "330 metres" -> "330 feet" (contradiction)."""
    options = [(m, m.group(3)) for m, _, _ in _unit_mentions(sentence)
               if m.group(3) in UNIT_SWAPS and sentence[max(0, m.start() - 1):m.start()] != "("]
    if not options:
        return None
    m, unit = rng.choice(options)
    return _sub(sentence, m, f"{m.group(1)}{m.group(2)}{UNIT_SWAPS[unit]}")


def number_format(sentence: str, rng: random.Random) -> str | None:
    """The same number written another way: 1,280 <-> 1280, 2 <-> two, 2,500,000 <-> 2.5 million."""
    options: list[tuple[re.Match[str], str]] = []
    for m in re.finditer(_NUM + r"(?![\w])", sentence):
        tok = m.group(1)
        if _in_range(sentence, m) or re.match(r"\s?[:–-]", sentence[m.end():m.end() + 2]):
            continue
        v = _value(tok)
        if re.fullmatch(r"1[5-9]\d\d|20\d\d", tok):
            continue  # years are not written with separators or in words
        if "," in tok:
            options.append((m, tok.replace(",", "")))
            if v >= 1_000_000 and v % 100_000 == 0:
                options.append((m, f"{format_number(v / 1_000_000)} million"))
        elif "." not in tok and v >= 10_000:
            options.append((m, f"{int(v):,}"))
        elif "." not in tok and 2 <= v <= 20:
            options.append((m, WORD_NUMBERS[int(v)]))
    for m in re.finditer(r"\b(" + "|".join(WORD_NUMBERS[2:]) + r")\b", sentence):
        options.append((m, str(WORD_NUMBERS.index(m.group(1)))))
    for m in re.finditer(r"(?<![\w.])(\d+(?:\.\d+)?) million\b", sentence):
        options.append((m, format_number(_value(m.group(1)) * 1_000_000)))
    if not options:
        return None
    m, new = rng.choice(options)
    return _sub(sentence, m, new)


def date_format(sentence: str, rng: random.Random, *, wrong: bool = False) -> str | None:
    """"12 March 1987" <-> "March 12, 1987" (or ISO 1987-03-12); with `wrong`, the day or the month shifted."""
    m = _DMY.search(sentence)
    if m:
        day, month, year = int(m.group(1)), m.group(2), m.group(3)
    else:
        m = _MDY.search(sentence)
        if not m:
            return None
        month, day, year = m.group(1), int(m.group(2)), m.group(3)
    mi = MONTHS.index(month)
    if wrong:
        if rng.random() < 0.5:
            day = day + rng.choice([-3, -2, -1, 1, 2, 3]) if 4 <= day <= 25 else (day + 5 if day < 4 else day - 5)
        else:
            mi = (mi + rng.choice([-2, -1, 1, 2])) % 12
    styles = ["mdy", "iso"] if m.re is _DMY else ["dmy", "iso"]
    style = rng.choice(styles)
    if style == "mdy":
        new = f"{MONTHS[mi]} {day}, {year}"
    elif style == "dmy":
        new = f"{day} {MONTHS[mi]} {year}"
    else:
        new = f"{year}-{mi + 1:02d}-{day:02d}"
    return _sub(sentence, m, new)


def move_lead_adverbial(sentence: str) -> str | None:
    """"In 1911, she won the prize." -> "She won the prize in 1911.": the same claim, clauses reordered."""
    m = _LEAD.match(sentence)
    if not m:
        return None
    rest, lead = m.group("rest"), m.group("lead")
    first = rest.split()[0]
    if first.lower() in {"the", "a", "an", "he", "she", "it", "they", "we", "his", "her", "its", "their", "this",
                         "these", "there"}:
        rest = rest[0].upper() + rest[1:]
    elif not first[:1].isupper():
        return None
    if " that " in rest:
        return None  # the adverbial could attach to the embedded clause
    return rest + " " + lead[0].lower() + lead[1:] + "."


def state_apposition(sentence: str) -> str | None:
    """"Marie Curie, a Polish physicist, won ..." -> "Marie Curie was a Polish physicist." (the apposition as a claim;
    `was` because a past main verb dates it; `is` otherwise)."""
    m = _APPOSITION.match(sentence)
    if not m:
        return None
    verb = m.group("verb")
    past = verb.endswith("ed") or verb in {"was", "were", "had", "won", "wrote", "made", "built", "became", "led"}
    return f"{m.group('head')} {'was' if past else 'is'} {m.group('app')}."


def drop_apposition(sentence: str) -> str | None:
    m = _APPOSITION.match(sentence)
    if not m:
        return None
    return f"{m.group('head')} {m.group('verb')}{m.group('rest')}."


def split_relative(sentence: str, rng: random.Random) -> str | None:
    """"X, who did A, did B." -> "X did A." or "X did B.": each clause holds on its own."""
    m = _RELATIVE.match(sentence)
    if not m:
        return None
    part = m.group("rel") if rng.random() < 0.5 else m.group("main")
    return f"{m.group('head')} {part}."


def passive_to_active(sentence: str) -> str | None:
    """"The church was built by John Smith in 1850." -> "John Smith built the church in 1850."."""
    m = _PASSIVE.match(sentence)
    if not m:
        return None
    verb = m.group("verb")
    past = _IRREGULAR_PAST.get(verb) or (verb if verb.endswith("ed") else None)
    if past is None:
        return None
    obj = m.group("obj")
    obj = obj[0].lower() + obj[1:]
    return f"{m.group('agent')} {past} {obj}{m.group('tail')}."


def passive_role_swap(sentence: str) -> str | None:
    """The agent and the object exchanged: "X built the church" for "the church was built by X" read backwards
    would be wrong only with two agents; here the passive's agent becomes its object (contradiction shape)."""
    m = _PASSIVE.match(sentence)
    if not m:
        return None
    verb = m.group("verb")
    past = _IRREGULAR_PAST.get(verb) or (verb if verb.endswith("ed") else None)
    obj = m.group("obj")
    if past is None or not obj.split()[-1][:1].isupper():
        return None  # only when the object is itself a name can the roles be swapped meaningfully
    return f"{obj} {past} {m.group('agent')}{m.group('tail')}."


def hypernym(sentence: str, rng: random.Random) -> str | None:
    """"a beagle barked" -> "an animal barked": a more general word is entailed (not the other way round)."""
    options = []
    for word, general in HYPERNYMS.items():
        for m in re.finditer(r"\b(a|an|the|A|An|The)\s" + re.escape(word) + r"\b(?!-)", sentence):
            options.append((m, general))
    if not options:
        return None
    m, general = rng.choice(options)
    article = m.group(1)
    if article.lower() in {"a", "an"}:
        art = "an" if general[0] in "aeiou" else "a"
        article = art.capitalize() if article[0].isupper() else art
    return _sub(sentence, m, f"{article} {general}")


def drop_year_phrase(sentence: str) -> str | None:
    """The date removed ("... won the prize in 1911." -> "... won the prize."): a true subset of the sentence."""
    out = re.sub(r",? (?:in|on|during) (?:(?:early |late |mid-)?(?:" + "|".join(MONTHS) + r") )?(?:\d{1,2} )?"
                 r"(?:1[5-9]\d\d|20\d\d)(?=[.,])", "", sentence, count=1)
    return out if out != sentence and len(out.split()) >= 5 else None


POSITIVE_KINDS = ("unit_abbreviation", "unit_conversion", "number_format", "date_format", "clause_reorder",
                  "apposition", "relative_clause", "passive_active", "hypernym", "dropped_detail")
NEGATIVE_KINDS = ("unit_conversion_wrong", "unit_swap", "date_shift", "role_swap")


def reword(sentence: str, kind: str, rng: random.Random) -> str | None:
    """One rewording of `kind` (a POSITIVE_KINDS or NEGATIVE_KINDS name), or None where it does not apply."""
    if kind == "unit_abbreviation":
        return unit_abbreviation(sentence, rng)
    if kind == "unit_conversion":
        return unit_conversion(sentence, rng)
    if kind == "unit_conversion_wrong":
        return unit_conversion(sentence, rng, wrong=True)
    if kind == "unit_swap":
        return unit_swap(sentence, rng)
    if kind == "number_format":
        return number_format(sentence, rng)
    if kind == "date_format":
        return date_format(sentence, rng)
    if kind == "date_shift":
        return date_format(sentence, rng, wrong=True)
    if kind == "clause_reorder":
        return move_lead_adverbial(sentence)
    if kind == "apposition":
        return state_apposition(sentence) if rng.random() < 0.5 else drop_apposition(sentence)
    if kind == "relative_clause":
        return split_relative(sentence, rng)
    if kind == "passive_active":
        return passive_to_active(sentence)
    if kind == "role_swap":
        return passive_role_swap(sentence)
    if kind == "hypernym":
        return hypernym(sentence, rng)
    if kind == "dropped_detail":
        return drop_year_phrase(sentence)
    raise ValueError(f"unknown rewording kind {kind!r}")


def reword_any(sentence: str, rng: random.Random, *, positive: bool = True, tries: int = 3) -> tuple[str, str] | None:
    """(kind, rewording) for a random applicable kind; several kinds stacked now and then (real paraphrases change
    more than one thing)."""
    kinds = list(POSITIVE_KINDS if positive else NEGATIVE_KINDS)
    rng.shuffle(kinds)
    for kind in kinds:
        if kind == "number_format" and rng.random() < 0.6:
            continue  # applies to most sentences with a number: without this it would be half of all rewordings
        out = reword(sentence, kind, rng)
        if out and out != sentence:
            if positive and rng.random() < 0.3:
                for extra in rng.sample(POSITIVE_KINDS, tries):
                    more = reword(out, extra, rng)
                    if more and more != out and more != sentence:  # a second step may undo the first
                        return f"{kind}+{extra}", more
            return kind, out
    return None
