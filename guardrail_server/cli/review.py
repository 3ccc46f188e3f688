"""`guardrail review | anchors | calibrate | recalibrate`: the human side of the judges.

    guardrail review [--blind]            label the queue in the terminal
    guardrail review web --port 8080      the same queue as a web page for a team (reviewers sign in)
    guardrail review users add|list|disable NAME
    guardrail review key generate --out FILE
    guardrail review hash VALUE           the stored form of a request_id / app / metadata value
    guardrail anchors select|list|show|export|import
    guardrail calibrate --anchors default --out thresholds.yaml
    guardrail recalibrate [--every monthly] | guardrail recalibrate report
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from guardrail_server.cli.common import add_config_flags, config_from_args, review_store_in_use
from guardrail_server.config import Config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("review", help="label sampled cases (terminal; `review web` for the page)")
    _store_flags(p)
    p.add_argument("--reviewer", default=None, help="name stored with labels (default: login name)")
    p.add_argument("--limit", type=int, default=None, help="stop after labeling this many cases")
    p.add_argument("--blind", action="store_true", default=None,
                   help="hide the judges' verdicts until you have labeled (review.blind_review)")
    p.set_defaults(handler=cmd_review)
    rsub = p.add_subparsers(dest="review_command", metavar="{web,users,key,hash}")
    w = rsub.add_parser("web", help="serve the review page")
    _store_flags(w)
    w.add_argument("--host", default=None, help="bind address (default: server.host, 127.0.0.1)")
    w.add_argument("--port", type=int, default=None, help="port (review.web_port; default 8088)")
    w.add_argument("--blind", action="store_true", default=None,
                   help="hide the judges' verdicts until the reviewer has labeled (review.blind_review)")
    w.set_defaults(handler=cmd_review_web)
    u = rsub.add_parser("users", help="reviewer accounts of the review page")
    usub = u.add_subparsers(dest="users_command", required=True, metavar="{add,list,disable}")
    ua = usub.add_parser("add", help="add a reviewer or set a new password (asked twice, or --password-stdin)")
    _store_flags(ua)
    ua.add_argument("name", help="the reviewer's sign-in name (1-128 characters, no spaces)")
    ua.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    ua.set_defaults(handler=cmd_users_add)
    ul = usub.add_parser("list", help="reviewer accounts")
    _store_flags(ul)
    ul.set_defaults(handler=cmd_users_list)
    ud = usub.add_parser("disable", help="stop a reviewer from signing in (their labels stay)")
    _store_flags(ud)
    ud.add_argument("name", help="the reviewer to disable")
    ud.set_defaults(handler=cmd_users_disable)
    k = rsub.add_parser("key", help="the review key (encrypts the intake journal and sealed raw text)")
    ksub = k.add_subparsers(dest="key_command", required=True, metavar="{generate}")
    kg = ksub.add_parser("generate", help="write a new random key (mode 0600)")
    kg.add_argument("--out", "-o", required=True, metavar="FILE",
                    help="where to write the key (refuses to overwrite; then set review.key_file to it)")
    kg.set_defaults(handler=cmd_key_generate)
    h = rsub.add_parser("hash", help="the stored (hashed) form of a request_id, app or metadata value")
    add_config_flags(h)
    h.add_argument("value", help="the value as the caller sent it")
    h.set_defaults(handler=cmd_hash)

    a = sub.add_parser("anchors", help="select, freeze, export and import anchor sets")
    asub = a.add_subparsers(dest="anchors_command", required=True, metavar="{select,list,show,export,import}")
    s = asub.add_parser("select", help="pick labeled cases covering every invariant and outcome; freeze a version")
    _store_flags(s)
    s.add_argument("--name", default="default", help="set name to freeze a new version of (default: default)")
    s.add_argument("--size", type=int, default=25, help="cases in the set (20-30 recommended)")
    s.add_argument("--per-cell", type=int, default=2, help="minimum cases per (invariant, pass|fail)")
    s.add_argument("--description", default="", help="a note stored with the version")
    s.add_argument("--dry-run", action="store_true", help="show the pick, freeze nothing")
    s.add_argument("--force", action="store_true", help="freeze even if some invariant lacks an outcome")
    s.set_defaults(handler=cmd_anchors_select)
    ls = asub.add_parser("list", help="anchor sets and versions")
    _store_flags(ls)
    ls.set_defaults(handler=cmd_anchors_list)
    sh = asub.add_parser("show", help="the cases of one version")
    _store_flags(sh)
    _set_flags(sh)
    sh.set_defaults(handler=cmd_anchors_show)
    ex = asub.add_parser("export", help="write a version as JSON Lines (with critiques); stdout without --out")
    _store_flags(ex)
    _set_flags(ex)
    ex.add_argument("set_name", nargs="?", metavar="NAME", help="the set to export (or --name)")
    ex.add_argument("--out", "-o", default="-", help="file to write (default -, stdout: `anchors export NAME > f`)")
    ex.set_defaults(handler=cmd_anchors_export)
    im = asub.add_parser("import", help="load a JSON Lines set and freeze it as a new version")
    _store_flags(im)
    im.add_argument("path", help="JSON Lines file written by `anchors export`")
    im.add_argument("--name", default=None, help="set name (default: the one in the file)")
    im.set_defaults(handler=cmd_anchors_import)

    c = sub.add_parser("calibrate", help="agreement with human labels; tune thresholds; write a config overlay")
    _store_flags(c)
    src = c.add_mutually_exclusive_group()
    src.add_argument("--anchors", default="default", metavar="NAME[@VERSION]", help="anchor set (default: latest 'default')")
    src.add_argument("--all-labels", action="store_true", help="use every labeled case instead of an anchor set")
    c.add_argument("--test-fraction", type=float, default=0.3, help="held-out share per label (default 0.3)")
    c.add_argument("--seed", type=int, default=0, help="seed of the held-out split (default 0)")
    c.add_argument("--target", type=float, default=0.90, help="agreement to beat (default 0.90)")
    c.add_argument("--out", "-o", default="guardrail-thresholds.yaml", help="thresholds overlay to write")
    c.add_argument("--no-write", action="store_true", help="report only")
    c.add_argument("--strict", action="store_true", help="exit 1 unless every invariant beats the target")
    c.add_argument("--json", action="store_true", help="print the results as JSON")
    c.add_argument("--invariant", action="append", default=None, metavar="NAME",
                   help="calibrate only this invariant (repeatable; default: every labeled one)")
    c.add_argument("--allow-disabling-threshold", action="store_true",
                   help="let tuning pick a threshold <= 0, at which the check can never fail (off by default)")
    c.add_argument("--min-anchors", type=int, default=20, metavar="N",
                   help="labeled cases an invariant needs before its threshold is written (default 20, the seed's "
                        "anchor-set size)")
    c.add_argument("--allow-unvalidated-threshold", action="store_true",
                   help="write thresholds the labels cannot back (too few labels, a held-out part too small to tell, "
                        "or agreement whose 95%% interval does not beat the current threshold's); the overlay marks "
                        "them unvalidated and `serve` logs unvalidated_threshold (off by default)")
    c.set_defaults(handler=cmd_calibrate)

    r = sub.add_parser("recalibrate", help="queue a random sample of recent traffic for review; report drift")
    _store_flags(r)
    r.add_argument("--size", type=int, default=50, help="cases per round")
    r.add_argument("--period", default="monthly", help="minimum time between rounds (default monthly)")
    r.add_argument("--every", default=None, metavar="PERIOD", help="keep running, checking every PERIOD")
    r.add_argument("--force", action="store_true", help="queue a round even if the last one is recent")
    r.add_argument("--anchors", default="default", help="anchor set name the round is measured against")
    r.add_argument("--any-reason", action="store_true", help="draw from all samples, not only the random slice")
    r.add_argument("--seed", type=int, default=None, help="seed of the random draw (default: a fresh one)")
    r.set_defaults(handler=cmd_recalibrate)
    rr = r.add_subparsers(dest="recalibrate_command", metavar="{report}")
    rep = rr.add_parser("report", help="agreement over time per invariant (drift)")
    _store_flags(rep)
    rep.add_argument("--drift-tolerance", type=float, default=0.05,
                     help="agreement this far below the calibration's baseline is drift (default 0.05)")
    rep.add_argument("--json", action="store_true", help="print the report as JSON")
    rep.set_defaults(handler=cmd_recalibrate_report)


def _store_flags(p: argparse.ArgumentParser) -> None:
    add_config_flags(p)
    p.add_argument("--url", default=None, help="review store URL (review.url), e.g. postgresql://host/db")


def _set_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", default="default", help="anchor set name (default: default)")
    p.add_argument("--version", type=int, default=None, help="default: latest")


def _config(args: argparse.Namespace) -> Config:
    return config_from_args(args, [("review.url", args.url)] if args.url else [])


def _store(config: Config, *, create: bool = False):  # noqa: ANN202 - ReviewStore, imported lazily (`--help` fast)
    """The review store a command uses, named on stderr (stdout stays the command's output). Only the commands that
    write something a store is made for (`review users add`, `anchors import`) create a missing one; the others exit
    2 (`review_store_in_use`)."""
    from guardrail_server.review.store import ReviewStore

    review_store_in_use(config.review.url, create=create)
    return ReviewStore(config.review.url, write_timeout_s=config.review.write_timeout_s).open()


def _err(msg: str) -> int:
    """Exit 2: what the command was asked cannot be done with this input (the documented code for a usage or input
    problem; 1 is left to `calibrate --strict` and to crashes)."""
    print(f"guardrail: {msg}", file=sys.stderr)
    return 2


def _refuse(msg: str) -> int:
    """Exit 2: the input cannot give a trustworthy result (not a crash, not a tool error)."""
    print(f"guardrail: {msg}", file=sys.stderr)
    return 2


# -- review ----------------------------------------------------------------------------------------------


def _key(config: Config) -> bytes | None:
    from guardrail_server.review.keys import load_key

    return load_key(config.review.key_file)


def cmd_review(args: argparse.Namespace) -> int:
    from guardrail_server.review import terminal
    from guardrail_server.review.keys import ReviewKeyError

    config = _config(args)
    reviewer = args.reviewer or getpass.getuser()
    blind = config.review.blind_review if args.blind is None else args.blind
    try:
        key = _key(config)
    except ReviewKeyError as exc:
        return _refuse(str(exc))
    with _store(config) as store:
        terminal.run(store, reviewer, sys.stdin, sys.stdout, limit=args.limit, blind=blind, key=key)
    return 0


def cmd_review_web(args: argparse.Namespace) -> int:
    from guardrail_server.review.keys import ReviewKeyError
    from guardrail_server.review.web import ReviewWebServer

    config = _config(args)
    host = args.host or config.server.host
    port = args.port if args.port is not None else (config.review.web_port or 8088)
    blind = config.review.blind_review if args.blind is None else args.blind
    try:
        key = _key(config)
    except ReviewKeyError as exc:
        return _refuse(str(exc))
    with _store(config) as store:
        server = ReviewWebServer(store, host, port, key=key, blind=blind)
        if not store.users():
            print("note: no reviewer accounts yet; add one with `guardrail review users add NAME`", file=sys.stderr)
        print(f"review page on http://{host}:{server.port}/  (Ctrl+C to stop)", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
    return 0


def cmd_users_add(args: argparse.Namespace) -> int:
    from guardrail_server.review.auth import hash_password

    name = args.name.strip()
    if not name or len(name) > 128 or any(c.isspace() for c in name):
        return _refuse("a reviewer name is 1-128 characters without spaces")
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {name}: ")
        if getpass.getpass("again: ") != password:
            return _refuse("the passwords differ")
    if len(password) < 8:
        return _refuse("a password needs at least 8 characters")
    with _store(_config(args), create=True) as store:
        store.set_user(name, hash_password(password))
    print(f"reviewer {name} can sign in")
    return 0


def cmd_users_list(args: argparse.Namespace) -> int:
    with _store(_config(args)) as store:
        users = store.users()
    if not users:
        print("no reviewer accounts (`guardrail review users add NAME`)")
    for u in users:
        print(f"{u['name']:<24} {'disabled' if u['disabled'] else 'active':<9} since {u['created_at'][:10]}")
    return 0


def cmd_users_disable(args: argparse.Namespace) -> int:
    with _store(_config(args)) as store:
        if not store.disable_user(args.name):
            return _err(f"no reviewer {args.name!r}")
    print(f"reviewer {args.name} can no longer sign in (signed-in sessions end when the page restarts)")
    return 0


def cmd_key_generate(args: argparse.Namespace) -> int:
    from guardrail_server.review.keys import generate_key

    try:
        path = generate_key(args.out)
    except FileExistsError:
        return _refuse(f"{args.out} exists; not overwriting a key (text sealed with it would become unreadable)")
    print(f"wrote a new review key to {path} (mode 0600); set review.key_file: {path}")
    return 0


def cmd_hash(args: argparse.Namespace) -> int:
    from guardrail_server.review.keys import ReviewKeyError, hash_key
    from guardrail_server.review.records import hash_value

    try:
        key = _key(_config(args))
    except ReviewKeyError as exc:
        return _refuse(str(exc))
    print(hash_value(args.value, hash_key(key) if key else None))
    return 0


# -- anchors ---------------------------------------------------------------------------------------------


def cmd_anchors_select(args: argparse.Namespace) -> int:
    from guardrail_server.review import anchors

    if not 1 <= args.size <= 500:
        return _err("--size must be between 1 and 500")
    with _store(_config(args)) as store:
        samples = store.labeled_samples()
        chosen, missing = anchors.select(samples, size=args.size, per_cell=args.per_cell)
        by_id = {s["id"]: s for s in samples}
        cover: dict[tuple[str, str], int] = {}
        for sid in chosen:
            for cell in anchors.cells(by_id[sid]):
                cover[cell] = cover.get(cell, 0) + 1
        print(f"picked {len(chosen)} of {len(samples)} labeled cases")
        for (inv, lab), n in sorted(cover.items()):
            print(f"  {inv:<24} {lab:<5} {n}")
        for inv, lab in missing:
            print(f"  {inv:<24} {lab:<5} 0  <- no labeled case has this outcome")
        if not chosen:
            return _err("no labeled cases to choose from (label some with `guardrail review` first)")
        if not 20 <= len(chosen) <= 30:
            print(f"note: {len(chosen)} cases; 20-30 is the recommended size")
        if missing and not args.force:
            return _err("some invariant lacks a pass or a fail case; label more, or pass --force")
        if args.dry_run:
            return 0
        info = store.create_anchor_set(args.name, chosen, args.description)
        print(f"froze anchor set {info['name']} version {info['version']} ({info['size']} cases)")
    return 0


def cmd_anchors_list(args: argparse.Namespace) -> int:
    with _store(_config(args)) as store:
        sets = store.anchor_sets()
    if not sets:
        print("no anchor sets yet (`guardrail anchors select`)")
    for s in sets:
        print(f"{s['name']:<16} v{s['version']:<4} {s['size']:>3} cases  {s['created_at'][:19]}  {s['description']}")
    return 0


def cmd_anchors_show(args: argparse.Namespace) -> int:
    with _store(_config(args)) as store:
        aset = store.anchor_set(args.name, args.version)
        if aset is None:
            return _err(f"no anchor set {args.name!r}")
        print(f"{aset['name']} v{aset['version']}: {len(aset['sample_ids'])} cases")
        for s in store.labeled_samples(aset["sample_ids"]):
            labels = " ".join(f"{k}={v}" for k, v in sorted(s["labels"].items()))
            critique = next((a["critique"] for a in s["annotations"] if a["critique"]), "")
            print(f"  {s['id'][:8]}  {labels:<50}  {critique[:60]}")
    return 0


def cmd_anchors_export(args: argparse.Namespace) -> int:
    from guardrail_server.review import anchors

    if args.set_name and args.name not in ("default", args.set_name):
        return _err(f"two set names given: {args.set_name!r} and --name {args.name!r}")
    name = args.set_name or args.name
    with _store(_config(args)) as store, tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "set.jsonl" if args.out == "-" else Path(args.out)
        try:
            info = anchors.export_jsonl(store, name, args.version, path)
        except KeyError as exc:
            return _err(str(exc.args[0]))
        if args.out == "-":  # the JSON Lines alone on stdout, so `> file` gets exactly the set
            sys.stdout.write(path.read_text())
            sys.stdout.flush()
    where = "stdout" if args.out == "-" else info["path"]
    print(f"wrote {info['name']} v{info['version']} ({len(info['sample_ids'])} cases) to {where}",
          file=sys.stderr if args.out == "-" else sys.stdout)
    return 0


def cmd_anchors_import(args: argparse.Namespace) -> int:
    from guardrail_server.review import anchors

    with _store(_config(args), create=True) as store:
        try:
            info = anchors.import_jsonl(store, args.path, name=args.name)
        except (OSError, ValueError, KeyError) as exc:
            return _err(f"cannot import {args.path}: {exc}")
    print(f"imported {info['size']} cases as anchor set {info['name']} version {info['version']}")
    return 0


# -- calibrate -------------------------------------------------------------------------------------------


def _fmt(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def format_results(results: list[Any], target: float) -> str:
    head = (f"{'invariant':<22} {'train':>5} {'test':>4}  {'threshold':<12}  {'accuracy [95% CI]':<18}  "
            f"{'kappa [95% CI]':<19}  {'tp fp fn tn':<11}  > {target:.2f}")
    lines = [head, "-" * len(head)]
    for r in results:
        c = r.confusion
        acc = f"{_fmt(r.accuracy)} [{_fmt(r.accuracy_low)},{_fmt(r.accuracy_high)}]"
        kappa = f"{_fmt(r.kappa)} [{_fmt(r.kappa_low)},{_fmt(r.kappa_high)}]"
        cells = f"{c['tp']:>2} {c['fp']:>2} {c['fn']:>2} {c['tn']:>2}"
        lines.append(
            f"{r.invariant:<22} {r.n_train:>5} {r.n_test:>4}  {r.threshold_before:.2f} -> {r.threshold:.2f}  "
            f"{acc:<18}  {kappa:<19}  {cells:<11}  {'yes' if r.agrees else 'NO'}"
        )
    lines.append("positive class = violation (human 'fail'; judge score < threshold); metrics on the held-out split")
    return "\n".join(lines)


def cmd_calibrate(args: argparse.Namespace) -> int:
    from guardrail_server.review import calibration
    from guardrail_invariants.registry import REGISTRY

    if not 0.0 < args.test_fraction < 1.0:
        return _err("--test-fraction must be between 0 and 1")
    if args.min_anchors < 1:
        return _refuse("--min-anchors must be at least 1")
    config = _config(args)
    with _store(config) as store:
        anchor_id = None
        if args.all_labels:
            samples = store.labeled_samples()
            source = "all-labels"
        else:
            name, _, version = args.anchors.partition("@")
            aset = store.anchor_set(name, int(version) if version else None)
            if aset is None:
                return _err(f"no anchor set {args.anchors!r} (`guardrail anchors select`, or --all-labels)")
            samples = store.labeled_samples(aset["sample_ids"])
            source, anchor_id = f"anchors:{aset['name']}@{aset['version']}", aset["id"]
        if not samples:
            return _err("no labeled cases to calibrate on")
        counts = calibration.label_counts(samples)
        if args.invariant:
            unknown = [n for n in args.invariant if n not in counts]
            if unknown:
                return _refuse(f"no human labels with a judge verdict for {', '.join(unknown)}")
            counts = {n: c for n, c in counts.items() if n in args.invariant}
        one_class = {n: c for n, c in counts.items() if not (c["pass"] and c["fail"])}
        if one_class:
            detail = "; ".join(f"{n}: {c['pass']} pass, {c['fail']} fail" for n, c in one_class.items())
            return _refuse(
                "cannot calibrate without both pass and fail labels — any threshold agrees with one-class labels, "
                f"so the result would mean nothing ({detail}). Label cases of the missing class, or leave these "
                "invariants out with --invariant NAME for the others"
            )
        current = {n: p.threshold for n, p in config.invariants.items() if p.threshold is not None}
        results = calibration.calibrate(
            samples, current, test_fraction=args.test_fraction, seed=args.seed, target=args.target,
            allow_disable=args.allow_disabling_threshold, invariants=list(counts),
        )
        if not results:
            return _err("no invariant has both a judge verdict and a human label")
        disabling = [r for r in results if calibration.disables(r.threshold)]
        if disabling and not args.allow_disabling_threshold:
            names = ", ".join(f"{r.invariant} ({r.threshold:.2f})" for r in disabling)
            return _refuse(f"refusing to write thresholds that disable a check: {names}; "
                           "pass --allow-disabling-threshold if that is really meant")
        checks = {r.invariant: calibration.validate(r, min_labels=args.min_anchors, test_fraction=args.test_fraction)
                  for r in results}
        unvalidated = [v for v in checks.values() if not v.validated]
        if unvalidated and not args.no_write and not args.allow_unvalidated_threshold:
            print(f"calibration on {source} ({len(samples)} cases), not saved:")
            print(format_results(results, args.target))
            return _refuse(
                f"refusing to write thresholds the labels cannot back (nothing written to {args.out}):\n  "
                + "\n  ".join(v.describe() for v in unvalidated)
                + "\nlabel more cases (`guardrail review`, then `guardrail anchors select`) and calibrate again, or "
                  "pass --allow-unvalidated-threshold to write them marked unvalidated")
        params = {"test_fraction": args.test_fraction, "seed": args.seed, "target": args.target,
                  "n_cases": len(samples), "overlay": None if args.no_write else args.out,
                  "min_anchors": args.min_anchors,
                  "unvalidated": {v.invariant: list(v.reasons) for v in unvalidated}}
        run_id = store.save_calibration(source, anchor_id, params, [r.row() for r in results])
    if args.json:
        print(json.dumps({"run": run_id, "source": source, "results": [
            {**r.row(), "validated": checks[r.invariant].validated, "not_validated_because":
             list(checks[r.invariant].reasons), "more_labels": checks[r.invariant].more_labels} for r in results]},
            indent=2))
    else:
        print(f"calibration run {run_id} on {source} ({len(samples)} cases)")
        print(format_results(results, args.target))
        for v in unvalidated:
            print(f"not validated: {v.describe()}")
    if not args.no_write:
        tuned = {r.invariant: r.threshold for r in results if r.n_train > 0 and r.invariant in REGISTRY}
        notes = {name: {"run": run_id, "source": source, "validated": checks[name].validated,
                        "note": "; ".join(checks[name].reasons)} for name in tuned}
        path = calibration.write_overlay(args.out, tuned, comment=f"run {run_id} on {source}", notes=notes)
        marked = [name for name in tuned if not checks[name].validated]
        print(f"wrote thresholds for {len(tuned)} invariants to {path} (load with --config {path}, or merge it)"
              + (f"; UNVALIDATED: {', '.join(marked)} (marked so in the overlay)" if marked else ""),
              file=sys.stderr if args.json else sys.stdout)
    if args.strict and not all(r.agrees for r in results):
        return 1
    return 0


# -- recalibrate -----------------------------------------------------------------------------------------


def cmd_recalibrate(args: argparse.Namespace) -> int:
    from guardrail_server.review import recalibration

    try:
        period = recalibration.parse_period(args.period)
        every = recalibration.parse_period(args.every).total_seconds() if args.every else None
    except ValueError as exc:
        return _err(str(exc))
    config = _config(args)
    while True:
        with _store(config) as store:
            if args.force or recalibration.due(store, period):
                info = recalibration.queue_round(
                    store, size=args.size, period=period, anchor_name=args.anchors, seed=args.seed,
                    random_slice_only=not args.any_reason,
                )
                print(f"round {info['id']}: queued {info['queued']} of {info['pool']} cases sampled "
                      f"{info['window_start'][:19]} .. {info['window_end'][:19]} (anchors {info['anchor_set']})")
            else:
                print(f"no round due (last one is younger than {args.period}); --force to queue anyway")
            print(recalibration.format_report(recalibration.report(store)))
        if every is None:
            return 0
        time.sleep(every)


def cmd_recalibrate_report(args: argparse.Namespace) -> int:
    from guardrail_server.review import recalibration

    with _store(_config(args)) as store:
        rep = recalibration.report(store, drift_tolerance=args.drift_tolerance)
    print(json.dumps(rep, indent=2, default=str) if args.json else recalibration.format_report(rep))
    return 0
