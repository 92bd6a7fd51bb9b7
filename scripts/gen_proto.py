"""Generate ucsdk/proto/*_pb2.py (and .pyi stubs) from ucsdk/proto/*.proto with protoc.

protoc comes from the grpcio-tools wheel (the dev extra), with the well-known types it
bundles on the include path. The generated modules are committed; tests/test_proto.py
regenerates them into a temporary directory and fails when they differ, so run this
(``make proto``) after editing a ``.proto`` file.

Usage: python scripts/gen_proto.py [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parents[1] / "ucsdk" / "proto"


def generate(out: Path, proto_dir: Path = PROTO_DIR) -> list[Path]:
    """Run protoc over every ``.proto`` in ``proto_dir``; the ``.proto`` files it compiled."""
    from grpc_tools import protoc

    protos = sorted(proto_dir.glob("*.proto"))
    if not protos:
        raise SystemExit(f"no .proto files in {proto_dir}")
    out.mkdir(parents=True, exist_ok=True)
    well_known = resources.files("grpc_tools") / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{proto_dir}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        *(str(p) for p in protos),
    ]
    # protoc names each file by its path under -I (e.g. "holepunch.proto").
    status = protoc.main(args)
    if status != 0:
        raise SystemExit(f"protoc failed with status {status}")
    return protos


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=PROTO_DIR,
        help="directory for the generated modules (default: ucsdk/proto)",
    )
    options = parser.parse_args(argv)
    for proto in generate(options.out):
        print(f"{proto.name} -> {options.out / (proto.stem + '_pb2.py')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
