"""`guardrail review`: label the queue in a terminal, one case at a time, as fast as one can type.

Per invariant: `p` pass, `f` fail, `-` no label for this invariant (e.g. a check that was skipped or errored,
or one the reviewer cannot judge), Enter = agree with the judge (on a skipped/errored verdict: no label); a
string like `pf-` at the first prompt sets every invariant at once. Then one line of critique. `s` skips the
case (it goes to the end of the queue), `q` quits. Reads lines, so it also works with piped input.

The reviewer sees the question, every passage, the response and the sampled responses (what
`self_consistency` compared), labels given earlier, and — unless review is blind (`review.blind_review`,
`--blind`) — the judges' verdicts. Blind: verdicts, reasons and the decision appear only after the label is
saved, and Enter cannot "agree" with a judge the reviewer has not seen.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from typing import Any, TextIO

from guardrail_server.review.store import ReviewStore
from guardrail_server.review.view import reveal, with_raw_text

HELP = ("p=pass f=fail -=no label  Enter=agree with judge (no label if it was skipped)  s=skip case  q=quit  "
        "(e.g. 'pf-' labels all invariants at once)")
BLIND_HELP = "p=pass f=fail -=no label  s=skip case  q=quit  (e.g. 'pf-' labels all invariants at once)"


def render(sample: Mapping[str, Any], progress: Mapping[str, int], width: int = 100, *, show_verdicts: bool = True,
           reviewer: str = "") -> str:
    case = sample["case"]
    wrap = textwrap.TextWrapper(width=width, initial_indent="    ", subsequent_indent="    ")
    head = f"[{progress['labeled']}/{progress['total']} labeled, {progress['pending']} pending]  sample {sample['id'][:8]}"
    if show_verdicts:
        head += f"  reason: {', '.join(sample['reasons'])}  decision: {sample['decision'] or '-'}"
    out = ["=" * width, head]
    if sample.get("raw_text"):
        out.append("(raw text, decrypted with the review key)")
    if show_verdicts and sample.get("disagreements"):
        out.append(f"judges disagree on: {', '.join(sample['disagreements'])}")
    if case.get("question"):
        out += ["QUESTION", wrap.fill(case["question"])]
    for i, p in enumerate(case.get("context", []), 1):
        title = f" {p['title']}" if p.get("title") else ""
        out += [f"PASSAGE [{p.get('id') or i}]{title}", wrap.fill(p["text"][:1200])]
    out += ["RESPONSE", wrap.fill(case.get("response", ""))]
    for i, text in enumerate(case.get("samples", []), 1):
        out += [f"SAMPLED RESPONSE {i}", wrap.fill(text[:1200])]
    notes = [a for a in sample.get("annotations", []) if show_verdicts or a.get("reviewer") == reviewer]
    if notes:
        out.append("LABELS SO FAR")
        for a in notes:
            labels = " ".join(f"{k}={v}" for k, v in sorted(a["labels"].items())) or "(no labels)"
            out.append(f"  {a['reviewer']}: {labels}" + (f"  — {a['critique']}" if a.get("critique") else ""))
    if not show_verdicts:
        out.append("INVARIANTS (blind review: the judges' verdicts are shown after you label)")
        out += [f"  {v['invariant']}" for v in sample["verdicts"]]
        return "\n".join(out)
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


def run(store: ReviewStore, reviewer: str, stdin: TextIO, stdout: TextIO, *, limit: int | None = None,
        blind: bool = False, key: bytes | None = None) -> int:
    """Labels until the queue is empty, `limit` cases are labeled, `q` or end of input. Returns cases labeled."""
    done = 0
    seen: set[str] = set()
    help_text = BLIND_HELP if blind else HELP
    stdout.write(help_text + "\n")
    while limit is None or done < limit:
        queue = [s for s in store.queue(limit=len(seen) + 1, include_skipped=False) if s["id"] not in seen]
        if not queue:
            stdout.write("queue empty.\n")
            break
        full = store.get_sample(queue[0]["id"]) or queue[0]
        sample = with_raw_text(full, key)
        seen.add(sample["id"])
        show = reveal(sample, reviewer, blind)
        stdout.write(render(sample, store.progress(), show_verdicts=show, reviewer=reviewer) + "\n")
        invariants = [v["invariant"] for v in sample["verdicts"]]
        judge = {v["invariant"]: v["outcome"] for v in sample["verdicts"]}
        labels: dict[str, str] = {}
        answered: set[str] = set()
        action = ""
        for i, name in enumerate(invariants):
            prompt = f"{name} (p/f/-/s/q) > " if not show else f"{name} [judge: {judge[name]}] (p/f/-/Enter/s/q) > "
            while True:
                answer = _ask(prompt, stdin, stdout)
                if answer is None or answer == "q":
                    action = "quit"
                elif answer == "s":
                    action = "skip"
                elif i == 0 and len(answer) == len(invariants) > 1 and set(answer) <= {"p", "f", "-"}:
                    labels = {n: "pass" if c == "p" else "fail" for n, c in zip(invariants, answer) if c != "-"}
                    answered = set(invariants)
                elif answer in ("p", "f"):
                    labels[name] = "pass" if answer == "p" else "fail"
                elif answer == "-":
                    pass  # no label for this invariant
                elif answer == "" and show and judge[name] in ("pass", "fail"):
                    labels[name] = judge[name]
                elif answer == "" and show:
                    pass  # the judge did not decide (skipped, error): nothing to agree with, no label
                else:
                    stdout.write(help_text + "\n")
                    continue
                answered.add(name)
                break
            if action or answered >= set(invariants):
                break
        if action == "quit":
            break
        if action == "skip":
            store.skip(sample["id"])
            continue
        critique = _ask("critique (one line, Enter for none) > ", stdin, stdout)
        if critique is None:
            break
        if not labels and not critique:
            store.skip(sample["id"])  # nothing to save: treat as skipped rather than "labeled" with nothing
            continue
        store.save_annotation(sample["id"], reviewer, labels, critique)
        if not show:
            verdicts = ", ".join(f"{n}: {judge[n]}" for n in invariants)
            stdout.write(f"saved. judges said: {verdicts}\n")
        done += 1
    p = store.progress()
    stdout.write(f"labeled {done} this session; {p['labeled']}/{p['total']} overall.\n")
    return done
