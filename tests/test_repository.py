"""The repository stands alone: the notes its docstrings cite are in docs/, the license it declares
is shipped, and the test extra names what the tests import."""
import re

import pytest
from conftest import REPO

tomllib = pytest.importorskip("tomllib")     # Python 3.11+

THEORY = REPO / "docs" / "THEORY.md"


def _sources():
    for pattern in ("mvreml/**/*.py", "mvreml/**/*.pyx", "benchmarks/**/*.py"):
        yield from REPO.glob(pattern)


def test_every_theory_citation_points_at_docs_and_names_an_existing_section():
    sections = {line[3:].strip() for line in THEORY.read_text().splitlines() if line.startswith("## ")}
    cited = 0
    for path in _sources():
        text = path.read_text()
        # a bare THEORY.md (not preceded by docs/) is a reference a clone cannot follow
        bare = [m.start() for m in re.finditer(r"(?<!docs/)THEORY\.md", text)]
        assert not bare, f"{path.relative_to(REPO)} cites THEORY.md without docs/"
        for m in re.finditer(r"docs/THEORY\.md((?:, \"[^\"]+\")*(?: and \"[^\"]+\")?)", text):
            cited += 1
            for name in re.findall(r"\"([^\"]+)\"", m.group(1)):
                assert any(s.startswith(name) for s in sections), (path.name, name, sections)
    assert cited >= 5


def test_license_file_is_the_mit_license_pyproject_declares():
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert meta["project"]["license"] == {"text": "MIT"}
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("MIT License") and "Copyright (c) 2026 the mvreml developers" in text
    assert "THE SOFTWARE IS PROVIDED \"AS IS\"" in text


def test_test_extra_lists_hypothesis():
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert any(r.startswith("hypothesis") for r in meta["project"]["optional-dependencies"]["test"])
