"""Regenerate the committed gRPC stubs from proto/laser/v1/laser.proto.

Run `python -m laser_serve.protogen`; tests/test_proto_stubs.py fails when the committed
stubs differ from a fresh generation.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTO = Path("laser/v1/laser.proto")
PACKAGE_DIR = Path(__file__).resolve().parent / "api"
STUBS = ("laser_pb2.py", "laser_pb2.pyi", "laser_pb2_grpc.py")


def generate(out_dir: Path) -> dict[str, str]:
    """Generate the stubs into out_dir/laser/v1 and return {file name: text}."""
    from grpc_tools import protoc  # build-time dependency only

    with tempfile.TemporaryDirectory() as tmp:
        argv = [
            "protoc",
            f"-I{ROOT / 'proto'}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            str(ROOT / "proto" / PROTO),
        ]
        if protoc.main(argv) != 0:
            raise RuntimeError("protoc failed on " + str(PROTO))
        texts = {}
        for name in STUBS:
            text = (Path(tmp) / "laser/v1" / name).read_text()
            # protoc writes absolute imports of the proto package; make them package-relative.
            texts[name] = text.replace(
                "from laser.v1 import", "from laser_serve.api.laser.v1 import"
            )
    target = out_dir / "laser" / "v1"
    target.mkdir(parents=True, exist_ok=True)
    for pkg in (out_dir / "laser", target):
        (pkg / "__init__.py").touch()
    for name, text in texts.items():
        (target / name).write_text(text)
    return texts


if __name__ == "__main__":
    generate(PACKAGE_DIR)
    sys.exit(0)
