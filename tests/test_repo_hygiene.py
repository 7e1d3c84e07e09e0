"""Committed files never carry the absolute path of the checkout that produced them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_no_tracked_file_contains_the_checkout_path():
    try:
        files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    needle = str(ROOT)
    offenders = []
    for name in files.splitlines():
        path = ROOT / name
        if path.is_file() and path.stat().st_size < 5_000_000:
            try:
                if needle in path.read_text(encoding="utf-8"):
                    offenders.append(name)
            except UnicodeDecodeError:
                continue
    assert not offenders, f"machine paths in: {offenders}"
