"""`guardrail check`: one case from flags or a JSON file, against a running server or in-process.

`--stream` reads the response from stdin as it arrives (a model's output piped in) and checks it over CheckGeneration:
a line per sentence as its verdict comes, a line per PII leak as soon as it is found, then the final verdict.

The exit code is the decision, so a shell script can gate on it without parsing output:
0 ALLOW, 1 FLAG, 3 BLOCK, 2 the check could not be made (bad input or flags, config error, server unreachable,
a call that failed). 1 and 3 keep the grep/diff convention (1 = "found something", 2 = trouble) and leave any
non-zero code meaning "not allowed"; `--exit-zero` restores 0 for every decision (errors stay 2).
"""

from __future__ import annotations

import argparse
import asyncio
import codecs
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc

from guardrail_client._proto.guardrail.v1 import guardrail_pb2 as pb
from guardrail_server.cli.common import EXIT_USAGE
from guardrail_server.cli.common import add_config_flags, config_from_args
from guardrail_server.convert import (
    case_from_dict,
    request_from_case,
    response_to_dict,
    result_to_pb,
)


EXIT_ALLOW, EXIT_FLAG, EXIT_BLOCK = 0, 1, 3
EXIT_CODES = {"allow": EXIT_ALLOW, "flag": EXIT_FLAG, "block": EXIT_BLOCK}
EPILOG = """exit codes: 0 ALLOW, 1 FLAG, 3 BLOCK, 2 no decision (bad input, config error, server unreachable or the call
failed). With --exit-zero every decision exits 0; errors still exit 2.
  guardrail check -r "$ANSWER" -p "$PASSAGE"; case $? in 0) ship;; 1) ship_and_log;; 3) refuse;; *) retry;; esac"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check", help="check one response and print the verdicts (exit code = decision)",
                       description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--file", "-f", help="JSON file with the case (question, context, response, samples); - for stdin")
    p.add_argument("--response", "-r", help="the response to check")
    p.add_argument("--question", "-q", default=None, help="the user's question (pii_boundary: PII in it is no leak)")
    p.add_argument("--passage", "-p", action="append", default=[], help="a context passage (repeatable; id = its index)")
    p.add_argument("--sample", "-s", action="append", default=[], help="another sampled response (repeatable)")
    p.add_argument("--invariant", "-i", action="append", default=[], help="run only these (repeatable)")
    p.add_argument("--target", "-t", default="localhost:50051", help="server address (default %(default)s)")
    p.add_argument("--in-process", action="store_true", help="run the invariants here instead of calling a server")
    p.add_argument("--timeout", type=float, default=None,
                   help="call deadline in seconds (default 30; with --stream the whole stream's, default none: the "
                        "server's streaming.max_duration_s)")
    _add_connection_flags(p)
    p.add_argument("--json", action="store_true", help="print JSON for machines")
    p.add_argument("--exit-zero", action="store_true", help="exit 0 whatever the decision (errors still exit 2)")
    p.add_argument("--stream", action="store_true",
                   help="read the response from stdin as it arrives and print a verdict line per sentence "
                        "(CheckGeneration; needs a server; --json prints one JSON object per event)")
    add_config_flags(p)
    p.set_defaults(handler=run)


def _load_case(args: argparse.Namespace) -> dict:
    data: dict = {}
    if args.file:
        raw = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
        data = json.loads(raw)
    if args.response is not None:
        data["response"] = args.response
    if args.question is not None:
        data["question"] = args.question
    if args.passage:
        data["context"] = [*(data.get("context") or []), *args.passage]
    if args.sample:
        data["samples"] = [*(data.get("samples") or []), *args.sample]
    return data


async def _in_process(args: argparse.Namespace, request: pb.CheckRequest) -> pb.CheckResponse:
    from guardrail_server.convert import case_from_request
    from guardrail_server.engine import CheckEngine

    engine = CheckEngine(config_from_args(args))
    await engine.load()
    try:
        result = await engine.check(case_from_request(request), list(request.invariants), sample=False)
    finally:
        await engine.close()
    return result_to_pb(result)


def _print_readable(reply: dict, response_text: str) -> None:
    print(f"decision: {reply['decision'].upper()}   ({reply['duration_ms']:.1f} ms, request {reply['request_id']})")
    for r in reply["results"]:
        print(f"  {r['invariant']:<22} {r['outcome'].upper():<8} score {r['score']:.3f} / threshold {r['threshold']:.3f}"
              + (f"   judge {r['judge']}" if r["judge"] else ""))
        if r["error"]:
            print(f"      error: {r['error']}")
        for f in r["findings"]:
            where = f"[{f['start']}:{f['end']}] {response_text[f['start']:f['end']]!r}" if f["start"] >= 0 else "[response]"
            extra = f" (passage {f['passage_id']})" if f["passage_id"] else ""
            print(f"      {f['kind']}: {where}{extra} {f['message']}")


def _add_connection_flags(p: argparse.ArgumentParser) -> None:
    """TLS and credential flags; each defaults to an environment variable so scripts keep secrets out of argv (a
    token on the command line would show in `ps`: hence a token file or $GUARDRAIL_TOKEN, never a --token value)."""
    env = os.environ.get
    p.add_argument("--tls", action="store_true", help="TLS with the system CA roots (implied by --tls-ca/--tls-cert)")
    p.add_argument("--tls-ca", metavar="PEM", default=env("GUARDRAIL_TLS_CA"),
                   help="CA that signed the server certificate (default: $GUARDRAIL_TLS_CA)")
    p.add_argument("--tls-cert", metavar="PEM", default=env("GUARDRAIL_TLS_CERT"),
                   help="client certificate for mTLS (default: $GUARDRAIL_TLS_CERT)")
    p.add_argument("--tls-key", metavar="PEM", default=env("GUARDRAIL_TLS_KEY"),
                   help="its private key (default: $GUARDRAIL_TLS_KEY)")
    p.add_argument("--tls-server-name", metavar="NAME", default=env("GUARDRAIL_TLS_SERVER_NAME"),
                   help="name to verify in the server certificate when it differs from the target host")
    p.add_argument("--token-file", metavar="FILE",
                   help="file holding the bearer token or the app's API key (default: $GUARDRAIL_TOKEN)")


def _transport(args: argparse.Namespace) -> tuple[object, str | None]:
    """TLS settings and the credential from the flags or environment."""
    from guardrail_client import TLS

    tls = None
    if args.tls or args.tls_ca or args.tls_cert or args.tls_key:
        tls = TLS(ca_file=args.tls_ca, cert_file=args.tls_cert, key_file=args.tls_key, server_name=args.tls_server_name)
    if args.token_file:
        token = Path(args.token_file).read_text(encoding="utf-8").strip() or None
    else:
        token = os.environ.get("GUARDRAIL_TOKEN", "").strip() or None
    return tls, token


def _remote(args: argparse.Namespace, request: pb.CheckRequest) -> pb.CheckResponse:
    """One Check through the thin client (TLS/mTLS and the credential from the flags or environment)."""
    from guardrail_client import GuardrailClient

    tls, token = _transport(args)
    with GuardrailClient(args.target, tls=tls, token=token, timeout=args.timeout) as client:
        reply = client.check_request(request).raw
    assert reply is not None
    return reply


def _stdin_deltas(fd: int) -> Iterator[str]:
    """The response as it arrives on `fd`: whatever the pipe holds at each read, decoded as UTF-8 (a character
    split across two reads is joined)."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    while chunk := os.read(fd, 4096):
        text = decoder.decode(chunk)
        if text:
            yield text
    tail = decoder.decode(b"", final=True)
    if tail:
        yield tail


def _stream(args: argparse.Namespace) -> int:
    """`--stream`: CheckGeneration over the response read from stdin."""
    from guardrail_client import GuardrailClient
    from guardrail_client.generation import GenerationResult, LeakResult, SentenceResult

    if args.in_process:
        print("guardrail check: --stream needs a server (--target), not --in-process", file=sys.stderr)
        return EXIT_USAGE
    if args.file == "-" or args.response is not None:
        print("guardrail check: with --stream the response is read from stdin (no --response, no --file -)",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        case = case_from_dict({**_load_case(args), "response": "-"})
    except (OSError, ValueError) as exc:
        print(f"guardrail check: cannot read the case: {exc}", file=sys.stderr)
        return EXIT_USAGE
    text: list[str] = []

    def deltas() -> Iterator[str]:
        for delta in _stdin_deltas(sys.stdin.fileno()):
            text.append(delta)
            yield delta

    request = request_from_case(case, args.invariant)
    context = [{"id": p.id, "text": p.text, "title": p.title, "url": p.url} for p in request.context]
    tls, token = _transport(args)
    final = None
    try:
        with GuardrailClient(args.target, tls=tls, token=token, timeout=args.timeout or 30.0) as client:
            for event in client.check_generation(deltas(), question=request.question, context=context,
                                                 samples=list(request.samples), invariants=list(request.invariants),
                                                 timeout=args.timeout):
                response = "".join(text)
                if isinstance(event, GenerationResult):
                    final = event
                if args.json:
                    print(json.dumps(_event_dict(event)), flush=True)
                elif isinstance(event, SentenceResult):
                    scores = "  ".join(f"{r.invariant} {r.outcome.name} {r.score:.3f}" for r in event.results)
                    print(f"sentence {event.index} [{event.start}:{event.end}] {event.decision.name:<5} {scores}  "
                          f"({event.latency_s * 1000:.0f} ms)  {_snippet(response[event.start:event.end])}",
                          flush=True)
                elif isinstance(event, LeakResult):
                    for f in event.findings:
                        print(f"leak [{f.start}:{f.end}] {event.decision.name:<5} {f.message}  "
                              f"{response[f.start:f.end]!r}", flush=True)
    except grpc.RpcError as err:
        print(f"guardrail check: {err.code().name}: {err.details()}", file=sys.stderr)
        return EXIT_USAGE
    if final is None or final.raw is None:
        print("guardrail check: the stream ended without a final verdict", file=sys.stderr)
        return EXIT_USAGE
    if not args.json:
        if final.cut:
            print(f"cut by BLOCK after {final.sentences} sentence(s): stop the generation")
        _print_readable(response_to_dict(final.raw.final.response), "".join(text))
    return 0 if args.exit_zero else exit_code(final.decision.name)


def _snippet(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[: limit - 1] + "\u2026")


def _event_dict(event: object) -> dict:
    from guardrail_client.generation import GenerationResult, GenerationStarted, LeakResult, SentenceResult

    if isinstance(event, GenerationStarted):
        return {"event": "started", "request_id": event.request_id,
                "sentence_invariants": list(event.sentence_invariants), "live_pii": event.live_pii}
    if isinstance(event, SentenceResult):
        return {"event": "sentence", "index": event.index, "start": event.start, "end": event.end,
                "decision": event.decision.name.lower(), "running": event.running.name.lower(),
                "latency_ms": round(event.latency_s * 1000, 1),
                "results": [{"invariant": r.invariant, "outcome": r.outcome.name.lower(), "score": r.score,
                             "findings": [{"start": f.start, "end": f.end, "kind": f.kind} for f in r.findings]}
                            for r in event.results]}
    if isinstance(event, LeakResult):
        return {"event": "leak", "decision": event.decision.name.lower(), "checked_until": event.checked_until,
                "findings": [{"start": f.start, "end": f.end, "kind": f.kind, "message": f.message}
                             for f in event.findings]}
    assert isinstance(event, GenerationResult) and event.raw is not None
    return {"event": "final", "cut": event.cut, "sentences": event.sentences,
            **response_to_dict(event.raw.final.response)}


def run(args: argparse.Namespace) -> int:
    if args.stream:
        return _stream(args)
    args.timeout = args.timeout or 30.0
    try:
        case = case_from_dict(_load_case(args))
    except (OSError, ValueError) as exc:
        print(f"guardrail check: cannot read the case: {exc}", file=sys.stderr)
        return EXIT_USAGE
    request = request_from_case(case, args.invariant)
    try:
        if args.in_process:
            reply = asyncio.run(_in_process(args, request))
        else:
            reply = _remote(args, request)
    except grpc.RpcError as err:
        print(f"guardrail check: {err.code().name}: {err.details()}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # in-process input errors carry the field name
        print(f"guardrail check: {exc}", file=sys.stderr)
        return EXIT_USAGE
    out = response_to_dict(reply)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        _print_readable(out, case.response)
    return 0 if args.exit_zero else exit_code(out["decision"])


def exit_code(decision: str) -> int:
    """The documented exit code of a decision; an unknown one (a newer server) is an error, never ALLOW."""
    return EXIT_CODES.get(decision.lower(), EXIT_USAGE)
