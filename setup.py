"""Build the Cython kernels in mvreml/_core against numpy (and CHOLMOD for the binding)."""
import os
from pathlib import Path

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

# mvreml._core.chol binds CHOLMOD directly: its header (libsuitesparse-dev puts it in
# /usr/include/suitesparse on Debian; SUITESPARSE_INCLUDE_DIR / SUITESPARSE_LIBRARY_DIR override)
SUITESPARSE_INCLUDE = [d for d in (os.environ.get("SUITESPARSE_INCLUDE_DIR"), "/usr/include/suitesparse",
                                   "/usr/local/include/suitesparse") if d and Path(d).is_dir()]
SUITESPARSE_LIB = [d for d in (os.environ.get("SUITESPARSE_LIBRARY_DIR"),) if d]
LINKED = {"chol": dict(libraries=["cholmod"], include_dirs=SUITESPARSE_INCLUDE, library_dirs=SUITESPARSE_LIB)}

kernels = sorted(Path("mvreml/_core").glob("*.pyx"))
extensions = [
    Extension(
        f"mvreml._core.{p.stem}",
        [str(p)],
        include_dirs=[np.get_include()] + LINKED.get(p.stem, {}).get("include_dirs", []),
        libraries=LINKED.get(p.stem, {}).get("libraries", []),
        library_dirs=LINKED.get(p.stem, {}).get("library_dirs", []),
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=["-O3"],
    )
    for p in kernels
]

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False,
                             "cdivision": True, "initializedcheck": False},
    )
)
