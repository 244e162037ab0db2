"""The proto contract: gen/ is what proto/ generates, buf lint passes, the comments name every error
the API returns, and nothing in the public contract changed by accident since main.

buf reads images built by scripts/gen.py (the same protoc and include paths as gen/), because the
googleapis imports come from the googleapis-common-protos wheel, not from the Buf Schema Registry.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2

from server.api.status_codes import STATUS_CODES

ROOT = Path(__file__).resolve().parent.parent
PROTO = ROOT / "proto"
BUF = ROOT / "node_modules" / ".bin" / "buf"
CONTRACT_FILE = PROTO / "allmine" / "livestream" / "chat" / "v1" / "live_stream_chat.proto"
IN_CI = os.environ.get("CI", "").lower() == "true"


def _buf() -> str:
    buf = str(BUF) if BUF.exists() else shutil.which("buf")
    if buf is None:
        if IN_CI:
            pytest.fail("buf is required under CI=true (npm ci installs @bufbuild/buf)")
        pytest.skip("buf not installed; run `npm ci`")
    return buf


def _image(proto_dir: Path, image: Path) -> list[str]:
    """Builds a buf image of `proto_dir` and returns `--path` arguments naming our own files."""
    listed = subprocess.run(
        [sys.executable, "scripts/gen.py", "--image", str(image), "--proto-dir", str(proto_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return [arg for path in listed.stdout.split() for arg in ("--path", path)]


def _buf_breaking(proto_dir: Path, against_dir: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    paths = _image(proto_dir, tmp_path / "input.binpb")
    _image(against_dir, tmp_path / "against.binpb")
    return subprocess.run(
        [
            _buf(),
            "breaking",
            str(tmp_path / "input.binpb"),
            "--against",
            str(tmp_path / "against.binpb"),
            "--config",
            str(PROTO / "buf.yaml"),
            *paths,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _git(*args: str) -> str | None:
    done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)
    return done.stdout.strip() if done.returncode == 0 else None


def _baseline_revision() -> str:
    """The commit whose contract this tree must stay compatible with.

    On a branch: where it left main. On main itself (CI's clean clone): main's previous commit, so the
    latest commit is checked too. A repository with one commit (or a shallow clone) compares against
    HEAD, which still catches uncommitted changes.
    """
    head = _git("rev-parse", "HEAD")
    if head is None:
        if IN_CI:
            pytest.fail("the contract check needs the git history under CI=true")
        pytest.skip("not a git checkout: no earlier contract to compare with")
    base = head
    for ref in ("main", "origin/main"):
        if _git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}") is not None:
            base = _git("merge-base", "HEAD", ref) or head
            break
    if base == head:
        base = _git("rev-parse", "--verify", "--quiet", "HEAD~1^{commit}") or head
    return base


def _proto_at(revision: str, into: Path) -> Path:
    archive = subprocess.run(
        ["git", "archive", "--format=tar", revision, "proto"], cwd=ROOT, capture_output=True, timeout=60
    )
    assert archive.returncode == 0, archive.stderr.decode()
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    return into / "proto"


def test_generated_code_is_fresh() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/gen.py", "--check"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_lint_passes(tmp_path: Path) -> None:
    buf = _buf()
    image = tmp_path / "image.binpb"
    paths = _image(PROTO, image)
    result = subprocess.run(
        [buf, "lint", str(image), *paths, "--config", str(PROTO / "buf.yaml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_contract_has_no_breaking_change_since_main(tmp_path: Path) -> None:
    baseline = _proto_at(_baseline_revision(), tmp_path / "baseline")
    result = _buf_breaking(PROTO, baseline, tmp_path)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_buf_breaking_refuses_a_removed_field(tmp_path: Path) -> None:
    changed = tmp_path / "changed"
    shutil.copytree(PROTO, changed)
    edited = changed / CONTRACT_FILE.relative_to(PROTO)
    text = edited.read_text()
    assert "  string request_id = 2;\n" in text
    edited.write_text(text.replace("  string request_id = 2;\n", ""))
    result = _buf_breaking(changed, PROTO, tmp_path)
    assert result.returncode == 100, result.stdout + result.stderr
    assert result.stdout.strip().endswith(
        'Previously present field "2" with name "request_id" on message "SendSuperlikeRequest" was deleted.'
    )


def test_buf_breaking_accepts_a_comment_only_change(tmp_path: Path) -> None:
    changed = tmp_path / "changed"
    shutil.copytree(PROTO, changed)
    edited = changed / CONTRACT_FILE.relative_to(PROTO)
    edited.write_text(
        edited.read_text().replace("  string stream_id = 1;\n", "  // Reworded.\n  string stream_id = 1;\n", 1)
    )
    result = _buf_breaking(changed, PROTO, tmp_path)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def _http_rules(proto_dir: Path, image: Path) -> dict[str, str]:
    _image(proto_dir, image)
    files = descriptor_pb2.FileDescriptorSet.FromString(image.read_bytes())
    rules = {}
    for file in files.file:
        if not file.package.startswith("allmine."):
            continue
        for service in file.service:
            for method in service.method:
                rule = method.options.Extensions[annotations_pb2.http]
                rules[f"{file.package}.{service.name}/{method.name}"] = str(rule)
    return rules


def test_rest_routes_are_unchanged_since_main(tmp_path: Path) -> None:
    # buf breaking does not compare custom options, and google.api.http is the public REST route.
    baseline = _http_rules(_proto_at(_baseline_revision(), tmp_path / "baseline"), tmp_path / "baseline.binpb")
    current = _http_rules(PROTO, tmp_path / "current.binpb")
    assert {name: current.get(name) for name in baseline} == baseline
    assert current["allmine.livestream.chat.v1.LiveStreamChat/SendSuperlike"] == (
        'post: "/api/v1/live-stream/{stream_id}/chat/superlike"\nbody: "*"\n'
    )


def test_every_error_reason_the_api_returns_is_documented_in_the_contract() -> None:
    text = CONTRACT_FILE.read_text()
    documented = set(re.findall(r"\b([A-Z][A-Z_]+[A-Z]):", text))
    returned = {error.reason for error in STATUS_CODES}
    assert returned - documented == set()
