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
def gryphon_data(data_dir):
    """The gryphon tutorial's records (sex and byear as factors) and its Pedigree."""
    import pandas as pd

    import mvreml

    d = data_dir / "gryphon_wam"
    ped = mvreml.Pedigree(pd.read_csv(d / "gryphonped.csv"))
    g = pd.read_csv(d / "gryphon.csv")
    g["sex"] = g["sex"].astype(str)
    g["byear"] = g["byear"].astype(str)
    return g, ped


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA.is_dir():
        pytest.fail(f"reference data not found at {DATA}")
    return DATA
