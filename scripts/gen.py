"""Regenerate gen/ from proto/: Python messages, stubs, type stubs, Envoy's descriptor set and the
REST edge's OpenAPI document (openapi.json, from that descriptor set and the error table).

    python scripts/gen.py           # rewrite gen/
    python scripts/gen.py --check   # exit 1 when gen/ is stale relative to proto/
    python scripts/gen.py --image F # write a protoc image with source info for `buf lint F`
    python scripts/gen.py --image F --proto-dir D   # the same image of another copy of proto/
                                    # (e.g. an earlier commit's, for `buf breaking`)

The google/api and google/rpc imports come from the googleapis-common-protos wheel, the well-known
types from grpcio-tools, so nothing is vendored and no network is needed.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import shutil
import sys
import tempfile
import tomllib
from pathlib import Path

import google.api.annotations_pb2
import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
GEN_DIR = ROOT / "gen"
DESCRIPTOR_NAME = "livestream_chat.pb"
OPENAPI_NAME = "openapi.json"
# ErrorInfo is not imported by our protos but travels in grpc-status-details-bin; Envoy's transcoder
# must know its type to render error details, so it joins the descriptor set explicitly.
EXTRA_DESCRIPTOR_INPUTS = ["google/rpc/error_details.proto", "google/rpc/status.proto"]


def _googleapis_include() -> Path:
    # google/api/annotations_pb2.py sits next to its .proto: two levels up is the include root.
    return Path(google.api.annotations_pb2.__file__).resolve().parent.parent.parent


def _well_known_include() -> Path:
    return Path(grpc_tools.__file__).resolve().parent / "_proto"


def generate(out_dir: Path) -> None:
    sources = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))
    if not sources:
        sys.exit(f"no .proto files under {PROTO_DIR}")
    includes = [f"-I{PROTO_DIR}", f"-I{_googleapis_include()}", f"-I{_well_known_include()}"]
    code_args = [
        "grpc_tools.protoc",
        *includes,
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *sources,
    ]
    if protoc.main(code_args) != 0:
        sys.exit("protoc failed generating Python code")
    descriptor_args = [
        "grpc_tools.protoc",
        *includes,
        "--include_imports",
        f"--descriptor_set_out={out_dir / DESCRIPTOR_NAME}",
        *sources,
        *EXTRA_DESCRIPTOR_INPUTS,
    ]
    if protoc.main(descriptor_args) != 0:
        sys.exit("protoc failed generating the descriptor set")
    write_openapi(out_dir / DESCRIPTOR_NAME, out_dir / OPENAPI_NAME)


def write_openapi(descriptor_set: Path, out: Path) -> None:
    from server.api.openapi import build_openapi  # needs gen/ importable: after the first generation

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    document = build_openapi(descriptor_set.read_bytes(), version)
    out.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")


def write_lint_image(path: Path, proto_dir: Path = PROTO_DIR) -> None:
    """A self-contained image for buf: it needs no module resolution, so no registry access."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sources = sorted(str(p.relative_to(proto_dir)) for p in proto_dir.rglob("*.proto"))
    args = [
        "grpc_tools.protoc",
        f"-I{proto_dir}",
        f"-I{_googleapis_include()}",
        f"-I{_well_known_include()}",
        "--include_imports",
        "--include_source_info",
        f"--descriptor_set_out={path}",
        *sources,
    ]
    if protoc.main(args) != 0:
        sys.exit("protoc failed building the lint image")
    # buf lints every file of an image; our own files are listed so the caller can pass them as --path
    print(*sources)


def _stale_files(expected: Path, actual: Path) -> list[str]:
    expected_files = {p.relative_to(expected) for p in expected.rglob("*") if p.is_file()}
    actual_files = {p.relative_to(actual) for p in actual.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    stale = sorted(str(p) for p in expected_files ^ actual_files)
    for rel in sorted(expected_files & actual_files):
        if not filecmp.cmp(expected / rel, actual / rel, shallow=False):
            stale.append(str(rel))
    return stale


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when gen/ differs from proto/")
    parser.add_argument("--image", type=Path, help="write a lint image here and print our file paths")
    parser.add_argument("--proto-dir", type=Path, default=PROTO_DIR, help="the .proto tree --image reads")
    args = parser.parse_args()
    if args.image:
        write_lint_image(args.image, args.proto_dir.resolve())
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate(fresh)
        if args.check:
            stale = _stale_files(fresh, GEN_DIR)
            if stale:
                print("gen/ is stale; run `make gen`. Differing files:", *stale, sep="\n  ")
                return 1
            print("gen/ is up to date")
            return 0
        shutil.rmtree(GEN_DIR, ignore_errors=True)
        shutil.copytree(fresh, GEN_DIR)
    print(f"regenerated {GEN_DIR.relative_to(ROOT)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
