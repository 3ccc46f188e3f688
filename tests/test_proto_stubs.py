"""The committed stubs must be exactly what protoc generates from the .proto (what `make proto` runs).

They live in `guardrail_client/_proto/guardrail/v1/`, not in a top-level `guardrail` package: protoc sees `proto/` as
`guardrail_client/_proto/`, so the generated modules import each other by that path (issue 23)."""

from __future__ import annotations

from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = "guardrail_client/_proto"  # the Makefile's PROTO_ROOT
GENERATED = ("guardrail_pb2.py", "guardrail_pb2.pyi", "guardrail_pb2_grpc.py")


def test_generated_stubs_match_proto(tmp_path: Path) -> None:
    rc = protoc.main([
        "protoc", f"-I{PROTO_ROOT}={ROOT / 'proto'}", f"-I{Path(protoc.__file__).parent / '_proto'}",
        f"--python_out={tmp_path}", f"--grpc_python_out={tmp_path}", f"--pyi_out={tmp_path}",
        f"{PROTO_ROOT}/guardrail/v1/guardrail.proto",
    ])
    assert rc == 0
    for name in GENERATED:
        fresh = (tmp_path / PROTO_ROOT / "guardrail/v1" / name).read_text()
        committed = (ROOT / PROTO_ROOT / "guardrail/v1" / name).read_text()
        assert fresh == committed, f"{PROTO_ROOT}/guardrail/v1/{name} drifted from the .proto: run `make proto`"


def test_the_makefile_generates_into_the_same_place() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert f"PROTO_ROOT := {PROTO_ROOT}\n" in makefile
    assert "-I$(PROTO_ROOT)=proto" in makefile and "$(PROTO_ROOT)/guardrail/v1/guardrail.proto" in makefile
