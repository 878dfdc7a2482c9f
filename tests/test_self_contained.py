"""A lone clone, with nothing beside it, has everything its tests read."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

from tests.support.shared import REPOSITORY


def test_a_lone_clone_collects_every_test(tmp_path: Path):
    clone = tmp_path / "lone" / "borealis"
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(REPOSITORY), str(clone)], check=True)
    environment = {**os.environ, "PYTHONPATH": f"{clone / 'src'}{os.pathsep}{clone}"}
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=clone,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert collected.returncode == 0, collected.stdout[-3000:] + collected.stderr[-3000:]
    assert "tests collected" in collected.stdout


def test_every_fixture_file_is_in_the_repository():
    """A fixture left untracked passes here and fails in every clone."""
    tracked = subprocess.run(
        ["git", "ls-files", "tests/fixtures"], cwd=REPOSITORY, capture_output=True, text=True, check=True
    ).stdout.split()
    on_disk = [
        str(path.relative_to(REPOSITORY))
        for path in (REPOSITORY / "tests" / "fixtures").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    ]
    assert sorted(on_disk) == sorted(tracked)


def test_no_test_module_imports_another():
    """Shared builders and helpers live in tests/support; a test module is never a library."""
    offenders = []
    for path in (REPOSITORY / "tests").rglob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            offenders += [f"{path.name}: {name}" for name in names if ".test_" in f".{name}"]
    assert offenders == []
