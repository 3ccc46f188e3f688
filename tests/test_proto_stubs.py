"""The committed stubs must be exactly what protoc generates from the .proto."""

from __future__ import annotations

from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
GENERATED = ("guardrail_pb2.py", "guardrail_pb2.pyi", "guardrail_pb2_grpc.py")


def test_generated_stubs_match_proto(tmp_path: Path) -> None:
    rc = protoc.main([
        "protoc", f"-I{ROOT / 'proto'}", f"-I{Path(protoc.__file__).parent / '_proto'}",
        f"--python_out={tmp_path}", f"--grpc_python_out={tmp_path}", f"--pyi_out={tmp_path}",
        str(ROOT / "proto/guardrail/v1/guardrail.proto"),
    ])
    assert rc == 0
    for name in GENERATED:
        fresh = (tmp_path / "guardrail/v1" / name).read_text()
        committed = (ROOT / "guardrail/v1" / name).read_text()
        assert fresh == committed, f"guardrail/v1/{name} drifted from the .proto: run `make proto`"
