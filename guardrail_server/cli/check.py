"""`guardrail check`: one case from flags or a JSON file, against a running server or in-process."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

import grpc

from guardrail.v1 import guardrail_pb2 as pb
from guardrail_server.cli.common import add_config_flags, config_from_args
from guardrail_server.convert import (
    case_from_dict,
    request_from_case,
    response_to_dict,
    result_to_pb,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check", help="check one response and print the verdicts")
    p.add_argument("--file", "-f", help="JSON file with the case (question, context, response, samples); - for stdin")
    p.add_argument("--response", "-r", help="the response to check")
    p.add_argument("--question", "-q", default=None)
    p.add_argument("--passage", "-p", action="append", default=[], help="a context passage (repeatable; id = its index)")
    p.add_argument("--sample", "-s", action="append", default=[], help="another sampled response (repeatable)")
    p.add_argument("--invariant", "-i", action="append", default=[], help="run only these (repeatable)")
    p.add_argument("--target", "-t", default="localhost:50051", help="server address (default %(default)s)")
    p.add_argument("--in-process", action="store_true", help="run the invariants here instead of calling a server")
    p.add_argument("--timeout", type=float, default=30.0, help="call deadline in seconds")
    _add_connection_flags(p)
    p.add_argument("--json", action="store_true", help="print JSON for machines")
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


def _remote(args: argparse.Namespace, request: pb.CheckRequest) -> pb.CheckResponse:
    """One Check through the thin client (TLS/mTLS and the credential from the flags or environment)."""
    from guardrail_client import TLS, GuardrailClient

    tls = None
    if args.tls or args.tls_ca or args.tls_cert or args.tls_key:
        tls = TLS(ca_file=args.tls_ca, cert_file=args.tls_cert, key_file=args.tls_key, server_name=args.tls_server_name)
    if args.token_file:
        token = Path(args.token_file).read_text(encoding="utf-8").strip() or None
    else:
        token = os.environ.get("GUARDRAIL_TOKEN", "").strip() or None
    with GuardrailClient(args.target, tls=tls, token=token, timeout=args.timeout) as client:
        reply = client.check_request(request).raw
    assert reply is not None
    return reply


def run(args: argparse.Namespace) -> int:
    try:
        case = case_from_dict(_load_case(args))
    except (OSError, ValueError) as exc:
        print(f"guardrail check: cannot read the case: {exc}", file=sys.stderr)
        return 2
    request = request_from_case(case, args.invariant)
    try:
        if args.in_process:
            reply = asyncio.run(_in_process(args, request))
        else:
            reply = _remote(args, request)
    except grpc.RpcError as err:
        print(f"guardrail check: {err.code().name}: {err.details()}", file=sys.stderr)
        return 2
    except Exception as exc:  # in-process input errors carry the field name
        print(f"guardrail check: {exc}", file=sys.stderr)
        return 2
    out = response_to_dict(reply)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        _print_readable(out, case.response)
    return 0
