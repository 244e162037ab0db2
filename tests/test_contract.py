"""The proto contract: gen/ is what proto/ generates, and buf lint passes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUF = ROOT / "node_modules" / ".bin" / "buf"


def test_generated_code_is_fresh() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/gen.py", "--check"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_lint_passes(tmp_path: Path) -> None:
    buf = str(BUF) if BUF.exists() else shutil.which("buf")
    if buf is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("buf is required under CI=true (npm ci installs @bufbuild/buf)")
        pytest.skip("buf not installed; run `npm ci`")
    image = tmp_path / "image.binpb"
    listed = subprocess.run(
        [sys.executable, "scripts/gen.py", "--image", str(image)],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=120,
    )
    paths = [arg for path in listed.stdout.split() for arg in ("--path", path)]
    result = subprocess.run(
        [buf, "lint", str(image), *paths], cwd=ROOT / "proto", capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""
