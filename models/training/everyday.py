"""Everyday facts in the shapes users paste into a guardrail — opening hours, heights, prices, doses, policies, prizes —
each with correct rewordings and minimal-change wrong twins, labelled by construction.

Why: WikiText rarely says "Monday to Friday, 9am to 5pm" or "won two prizes, in physics and chemistry", yet these are
the first things a user tries. A fact is a template with slots; its rewordings restate the same slot values in other
words and formats (weekdays / 09:00-17:00, 330 m, aggregation over two sentences, active/passive), and its twins change
exactly one slot (a wrong hour, the wrong count, a swapped name, a negation, a detail the context does not give).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from guardrail_models.training.rewordings import WORD_NUMBERS, format_number


@dataclass(frozen=True, slots=True)
class Fact:
    context: str
    supported: list[str]
    contradicted: list[str]
    unsupported: list[str]


PLACES = ["Harbour Tower", "Castle Hill Bridge", "Northgate Lighthouse", "Lindenberg TV Tower", "Old Mill Chimney",
          "Saint Aurel Cathedral", "Riverside Ferris Wheel", "Kestrel Dam", "Marlow Observatory", "Grand Arch"]
CITIES = ["Lyon", "Porto", "Ghent", "Bergen", "Graz", "Tartu", "Cork", "Kraków", "Bilbao", "Turin", "Leeds", "Utrecht"]
PEOPLE = ["Ada Moreno", "Jonas Weber", "Priya Raman", "Tomás Silva", "Elena Petrova", "Kwame Mensah", "Hana Sato",
          "Lucas Martin", "Amira Haddad", "Oskar Lind", "Mei Chen", "Ruth Okafor"]
FIELDS = ["physics", "chemistry", "medicine", "literature", "economics", "mathematics"]
AWARDS = ["Halden Prize", "Corvin Medal", "Aster Award", "Meridian Prize"]
WORKS = ["The Blue Harbour", "Morning in Delft", "The Orchard Wall", "Lady with a Lantern", "The Salt Road"]
MUSEUMS = ["National Gallery", "City Museum", "Modern Art Hall", "Rijksmuseum", "Prado"]
TEAMS = ["Support", "The help desk", "Customer service", "The clinic", "The front office", "The library"]
TZ = ["CET", "GMT", "EST", "PST", "JST", ""]
PRODUCTS = ["X200 router", "Aero kettle", "Nimbus backpack", "Vela desk lamp", "Quill e-reader", "Orbit speaker"]
DRUGS = ["amoxicillin", "ibuprofen", "paracetamol", "cetirizine", "metformin"]
LIBS = ["Datum", "Flowkit", "Pyrite", "Lattice", "Corvid"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def _h12(h: int) -> str:
    return f"{h % 12 or 12}{'am' if h < 12 else 'pm'}"


def _h24(h: int) -> str:
    return f"{h:02d}:00"


def hours(r: random.Random) -> Fact:
    team, tz = r.choice(TEAMS), r.choice(TZ)
    a, b = r.randint(7, 10), r.randint(16, 19)
    z = f" {tz}" if tz else ""
    ctx = f"{team} is open Monday to Friday, {_h12(a)} to {_h12(b)}{z}."
    ok = [f"{team} is open on weekdays from {_h24(a)} to {_h24(b)}{z}.",
          f"{team} is open weekdays, {_h24(a)}–{_h24(b)}{z}.",
          f"You can reach {team.lower() if team.startswith('The') else team} between {_h12(a)} and {_h12(b)}{z} from "
          f"Monday through Friday.",
          f"{team} opens at {_h24(a)}{z} on weekdays.", f"{team} is open on Wednesdays."]
    bad = [f"{team} is open on weekdays from {_h24(a)} to {_h24(b + r.choice([1, 2]))}{z}.",
           f"{team} is open Monday to Saturday, {_h12(a)} to {_h12(b)}{z}.",
           f"{team} is open on weekends from {_h24(a)} to {_h24(b)}{z}.",
           f"{team} opens at {_h24(a + 1)}{z} on weekdays.", f"{team} is open on Sundays."]
    more = [f"{team} is open Monday to Friday, {_h12(a)} to {_h12(b)}{z}, and on Saturday mornings.",
            f"{team} is open on weekdays from {_h24(a)} to {_h24(b)}{z} and answers calls within five minutes."]
    return Fact(ctx, ok, bad, more)


def height(r: random.Random) -> Fact:
    place, city = r.choice(PLACES), r.choice(CITIES)
    n = r.choice([r.randint(20, 400), r.randint(20, 99) * 10])
    year = r.randint(1850, 2015)
    ctx = f"The {place} in {city} was completed in {year}. It is {n} metres tall."
    ok = [f"The {place} is {n} m tall.", f"The {place} stands {n} metres high.",
          f"The {place}, completed in {year}, is {n} m tall.", f"The {place} has a height of {n} m.",
          f"The {place} in {city} was finished in {year}.", f"The {place} is in {city}."]
    bad = [f"The {place} is {n} ft tall.", f"The {place} is {n + r.choice([-30, -10, 10, 25])} m tall.",
           f"The {place} was completed in {year + r.choice([-12, -3, 4, 20])}.",
           f"The {place} is in {r.choice([c for c in CITIES if c != city])}.",
           f"The {place} is not {n} metres tall."]
    more = [f"The {place} is {n} m tall and was designed by {r.choice(PEOPLE)}.",
            f"The {place} is the tallest structure in {city}."]
    return Fact(ctx, ok, bad, more)


def prizes(r: random.Random) -> Fact:
    person, award = r.choice(PEOPLE), r.choice(AWARDS)
    f1, f2 = r.sample(FIELDS, 2)
    y1 = r.randint(1900, 1990)
    y2 = y1 + r.randint(3, 15)
    ctx = f"{person} received the {award} in {f1.capitalize()} in {y1}. In {y2}, {person.split()[0]} also won the " \
          f"{award} in {f2.capitalize()}."
    ok = [f"{person} won two {award}s, in {f1} and in {f2}.", f"{person} won the {award} twice.",
          f"{person} was awarded the {award} in {f1} and later in {f2}.",
          f"In {y2}, {person} won the {award} in {f2}.", f"{person} first won the {award} in {y1}."]
    f3 = r.choice([f for f in FIELDS if f not in (f1, f2)])
    bad = [f"{person} won three {award}s, in {f1}, {f2} and {f3}.", f"{person} won the {award} only once.",
           f"{person} won two {award}s, in {f1} and in {f3}.", f"{person} first won the {award} in {y2}.",
           f"{person} won the {award} in {f2} in {y1}."]
    more = [f"{person} won two {award}s and taught at the University of {r.choice(CITIES)}.",
            f"{person} was the first woman to win the {award}."]
    return Fact(ctx, ok, bad, more)


def artwork(r: random.Random) -> Fact:
    person, work, museum, city = r.choice(PEOPLE), r.choice(WORKS), r.choice(MUSEUMS), r.choice(CITIES)
    year = r.randint(1480, 1920)
    ctx = f"{person} painted {work} in {year}. The painting hangs in the {museum} in {city}."
    ok = [f"{person} painted {work}, which hangs in the {museum} in {city}.",
          f"{work} was painted by {person}.", f"{work} is on display in {city}.",
          f"{work}, painted in {year}, is in the {museum}."]
    other = r.choice([p for p in PEOPLE if p != person])
    bad = [f"{other} painted {work}, which hangs in the {museum} in {city}.",
           f"{person} painted {work}, which hangs in the {museum} in {r.choice([c for c in CITIES if c != city])}.",
           f"{work} was painted in {year + r.choice([-40, -7, 6, 30])}.", f"{person} did not paint {work}."]
    more = [f"{person} painted {work}, which was stolen in {year + 150} and later recovered.",
            f"{work} is the most visited painting in the {museum}."]
    return Fact(ctx, ok, bad, more)


def distance(r: random.Random) -> Fact:
    km = r.choice([1.28, 2.5, 3.4, 0.75, 4.2, 12.6, 1.5])
    walk = r.choice([20, 30, 45, 90, 120])
    name = r.choice(["coastal trail", "river path", "ridge walk", "nature loop", "city wall walk"])
    ctx = f"The {name} is {format_number(km)} km long and takes about {walk} minutes to walk."
    ok = [f"The {name} is {format_number(km * 1000)} metres long.", f"The {name} is {format_number(km)} kilometres long.",
          f"Walking the {name} takes roughly {format_number(walk / 60) + ' hours' if walk % 60 == 0 or walk == 90 else str(walk) + ' min'}."]
    bad = [f"The {name} is {format_number(km * 100)} metres long.", f"The {name} is {format_number(km)} miles long.",
           f"Walking the {name} takes about {walk * 2} minutes."]
    more = [f"The {name} is {format_number(km)} km long and suitable for wheelchairs.", f"The {name} is closed in winter."]
    return Fact(ctx, ok, bad, more)


def returns(r: random.Random) -> Fact:
    days = r.choice([14, 30, 60, 90])
    product = r.choice(PRODUCTS)
    ctx = f"Customers can return the {product} within {days} days of delivery for a full refund. Opened items must be " \
          f"in their original packaging."
    ok = [f"The {product} can be returned for a full refund up to {days} days after delivery.",
          f"You have {WORD_NUMBERS[days] if days <= 20 else days} days from delivery to return the {product}.",
          f"A full refund is available if the {product} is returned within {days} days.",
          f"Opened items have to be returned in the original packaging."]
    bad = [f"The {product} can be returned within {days * 2} days of delivery for a full refund.",
           f"The {product} can be returned within {days} days for store credit only.",
           f"Opened items do not need their original packaging.",
           f"The {product} cannot be returned after it is delivered."]
    more = [f"Returns of the {product} are free of charge.", f"Refunds are paid within five business days."]
    return Fact(ctx, ok, bad, more)


def dose(r: random.Random) -> Fact:
    drug, mg = r.choice(DRUGS), r.choice([250, 400, 500, 850, 1000])
    times = r.choice([2, 3])
    days = r.choice([5, 7, 10])
    ctx = f"Adults take one {mg} mg tablet of {drug} {WORD_NUMBERS[times]} times a day for {days} days, with food."
    ok = [f"The adult dose of {drug} is {mg} milligrams {times} times daily.",
          f"Adults should take {drug} with food.", f"The course of {drug} lasts {WORD_NUMBERS[days]} days.",
          f"Adults take {mg * times} mg of {drug} per day."]
    bad = [f"The adult dose of {drug} is {mg} milligrams {times + 1} times daily.",
           f"Adults should take {drug} on an empty stomach.", f"The course of {drug} lasts {days + 7} days.",
           f"Adults take {mg * 10} mg of {drug} per day."]
    more = [f"{drug.capitalize()} may cause drowsiness.", f"Children take half the adult dose of {drug}."]
    return Fact(ctx, ok, bad, more)


def interest(r: random.Random) -> Fact:
    rate = r.choice([1.5, 2.25, 3.1, 4.0, 0.8])
    minimum = r.choice([100, 500, 1000, 2500])
    acct = r.choice(["Saver Plus account", "Easy Access account", "Fixed Bond", "Junior Saver"])
    ctx = f"The {acct} pays {format_number(rate)}% interest per year. The minimum opening deposit is ${minimum:,}."
    ok = [f"The {acct} pays an annual interest rate of {format_number(rate)} percent.",
          f"You need at least ${minimum:,} to open the {acct}.",
          f"The {acct} earns {format_number(rate)} per cent a year."]
    bad = [f"The {acct} pays {format_number(rate)}% interest per month.",
           f"The {acct} pays {format_number(rate + 1)}% interest per year.",
           f"You can open the {acct} with ${minimum // 10:,}."]
    more = [f"The {acct} has no withdrawal fees.", f"Interest on the {acct} is paid monthly."]
    return Fact(ctx, ok, bad, more)


def software(r: random.Random) -> Fact:
    lib = r.choice(LIBS)
    major, minor = r.randint(1, 5), r.randint(0, 9)
    py = r.choice([8, 9, 10, 11, 12])
    day = r.choice(range(1, 28))
    month = r.choice(["January", "March", "June", "September", "November"])
    year = r.randint(2019, 2025)
    ctx = f"{lib} {major}.{minor} was released on {day} {month} {year}. It requires Python 3.{py} or later."
    ok = [f"{lib} {major}.{minor} needs Python 3.{py} or newer.", f"{lib} {major}.{minor} came out in {month} {year}.",
          f"Python 3.{py} or a later version is required by {lib} {major}.{minor}.",
          f"{lib} {major}.{minor} was released on {month} {day}, {year}."]
    bad = [f"{lib} {major}.{minor} runs on Python 3.{py - 2}.", f"{lib} {major}.{minor} came out in {year - 1}.",
           f"{lib} {major}.{minor} was released on {month} {day + 1}, {year}.",
           f"{lib} {major}.{minor} does not support Python 3.{py}."]
    more = [f"{lib} {major}.{minor} also supports PyPy.", f"{lib} {major}.{minor} is the last release with Windows support."]
    return Fact(ctx, ok, bad, more)


def staff(r: random.Random) -> Fact:
    a, b = r.sample(PEOPLE, 2)
    company = r.choice(["Brightwell", "Norcast", "Tessel Labs", "Quarry & Co", "Helio Foods"])
    year = r.randint(1990, 2022)
    n = r.choice([12, 40, 150, 2300, 18000])
    ctx = f"{a} founded {company} in {year}. Today the company employs {n:,} people, and {b} is its chief executive."
    ok = [f"{company} was founded by {a}.", f"{company} has {n:,} employees.",
          f"{b} runs {company}, which {a} founded in {year}.", f"{company} is led by {b}."]
    bad = [f"{company} was founded by {b}.", f"{company} has {n * 3:,} employees.",
           f"{a} is the chief executive of {company}.", f"{company} was founded in {year + 5}."]
    more = [f"{company} is based in {r.choice(CITIES)}.", f"{company} was founded by {a} and two friends."]
    return Fact(ctx, ok, bad, more)


def schedule(r: random.Random) -> Fact:
    day = r.choice(DAYS[:5])
    h = r.randint(9, 16)
    what = r.choice(["The team meeting", "Maintenance", "The weekly backup", "The yoga class", "The market"])
    ctx = f"{what} takes place every {day} at {_h12(h)}."
    ok = [f"{what} is held weekly on {day}s at {_h24(h)}.", f"{what} happens once a week.",
          f"{what} is on {day}s."]
    other = r.choice([d for d in DAYS if d != day])
    bad = [f"{what} is held weekly on {other}s at {_h24(h)}.", f"{what} takes place every {day} at {_h24(h + 2)}.",
           f"{what} happens twice a week."]
    more = [f"{what} takes place every {day} at {_h12(h)} and lasts two hours.", f"{what} is open to the public."]
    return Fact(ctx, ok, bad, more)


TEMPLATES: tuple[Callable[[random.Random], Fact], ...] = (
    hours, height, prizes, artwork, distance, returns, dose, interest, software, staff, schedule)


def everyday_pairs(n: int, seed: int) -> list[tuple[str, str, str, str]]:
    """(premise, hypothesis, label, kind) — about half supported, a third contradicted, the rest unsupported."""
    r = random.Random(seed)
    out = []
    while len(out) < n:
        template = r.choice(TEMPLATES)
        fact = template(r)
        roll = r.random()
        if roll < 0.5:
            out.append((fact.context, r.choice(fact.supported), "entailment", f"everyday_{template.__name__}"))
        elif roll < 0.83:
            out.append((fact.context, r.choice(fact.contradicted), "contradiction", f"everyday_{template.__name__}"))
        else:
            out.append((fact.context, r.choice(fact.unsupported), "neutral", f"everyday_{template.__name__}"))
    return out
