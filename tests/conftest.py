"""Shared fixtures: where the reference data live (tests/data, copied from the public sets in
../shared/data with their SOURCE notes, so that a clone of the repository alone runs the tests)."""
import os
from pathlib import Path

# The tests time nothing: one BLAS thread avoids oversubscribing the two cores with the many
# small dense reference computations (set before numpy / CHOLMOD load OpenBLAS).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA.is_dir():
        pytest.fail(f"reference data not found at {DATA}")
    return DATA
