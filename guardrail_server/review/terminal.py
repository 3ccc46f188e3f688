"""`guardrail review`: label the queue in a terminal, one case at a time, as fast as one can type.

Per invariant: `p` pass, `f` fail, Enter = agree with the judge; a string like `pfp` at the first prompt sets
every invariant at once. Then one line of critique. `s` skips the case (it goes to the end of the queue),
`q` quits. Reads lines, so it also works with piped input.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from typing import Any, TextIO

from guardrail_server.review.store import ReviewStore

HELP = "p=pass f=fail Enter=agree with judge  s=skip case  q=quit  (e.g. 'pf' labels all invariants at once)"


def render(sample: Mapping[str, Any], progress: Mapping[str, int], width: int = 100) -> str:
    case = sample["case"]
    wrap = textwrap.TextWrapper(width=width, initial_indent="    ", subsequent_indent="    ")
    out = [
        "=" * width,
        f"[{progress['labeled']}/{progress['total']} labeled, {progress['pending']} pending]  "
        f"sample {sample['id'][:8]}  reason: {', '.join(sample['reasons'])}  decision: {sample['decision'] or '-'}",
    ]
    if sample.get("disagreements"):
        out.append(f"judges disagree on: {', '.join(sample['disagreements'])}")
    if case.get("question"):
        out += ["QUESTION", wrap.fill(case["question"])]
    for i, p in enumerate(case.get("context", []), 1):
        title = f" {p['title']}" if p.get("title") else ""
        out += [f"PASSAGE [{p.get('id') or i}]{title}", wrap.fill(p["text"][:1200])]
    out += ["RESPONSE", wrap.fill(case.get("response", ""))]
    out.append("VERDICTS")
    for v in sample["verdicts"]:
        out.append(
            f"  {v['invariant']:<22} {v['outcome'].upper():<7} score {v['score']:.2f} (threshold {v['threshold']:.2f})"
            + (f"  judge {v['judge']}" if v.get("judge") else "")
        )
        for f in v.get("findings", [])[:6]:
            quote = f"  «{f['quote']}»" if f.get("quote") else ""
            out.append(f"      - {f['message']}{quote}")
    return "\n".join(out)


def _ask(prompt: str, stdin: TextIO, stdout: TextIO) -> str | None:
    stdout.write(prompt)
    stdout.flush()
    line = stdin.readline()
    return None if line == "" else line.strip()


def run(store: ReviewStore, reviewer: str, stdin: TextIO, stdout: TextIO, *, limit: int | None = None) -> int:
    """Labels until the queue is empty, `limit` cases are labeled, `q` or end of input. Returns cases labeled."""
    done = 0
    seen: set[str] = set()
    stdout.write(HELP + "\n")
    while limit is None or done < limit:
        queue = [s for s in store.queue(limit=len(seen) + 1, include_skipped=False) if s["id"] not in seen]
        if not queue:
            stdout.write("queue empty.\n")
            break
        sample = queue[0]
        seen.add(sample["id"])
        stdout.write(render(sample, store.progress()) + "\n")
        invariants = [v["invariant"] for v in sample["verdicts"]]
        judge = {v["invariant"]: v["outcome"] for v in sample["verdicts"]}
        labels: dict[str, str] = {}
        action = ""
        for i, name in enumerate(invariants):
            while True:
                answer = _ask(f"{name} [judge: {judge[name]}] (p/f/Enter/s/q) > ", stdin, stdout)
                if answer is None or answer == "q":
                    action = "quit"
                elif answer == "s":
                    action = "skip"
                elif i == 0 and len(answer) == len(invariants) > 1 and set(answer) <= {"p", "f"}:
                    labels = {n: "pass" if c == "p" else "fail" for n, c in zip(invariants, answer)}
                elif answer in ("p", "f"):
                    labels[name] = "pass" if answer == "p" else "fail"
                elif answer == "" and judge[name] in ("pass", "fail"):
                    labels[name] = judge[name]
                else:
                    stdout.write(HELP + "\n")
                    continue
                break
            if action or len(labels) == len(invariants):
                break
        if action == "quit":
            break
        if action == "skip":
            store.skip(sample["id"])
            continue
        critique = _ask("critique (one line, Enter for none) > ", stdin, stdout)
        if critique is None:
            break
        store.save_annotation(sample["id"], reviewer, labels, critique)
        done += 1
    p = store.progress()
    stdout.write(f"labeled {done} this session; {p['labeled']}/{p['total']} overall.\n")
    return done
