"""Build the Cython kernels in mvreml/_core against numpy."""
from pathlib import Path

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

kernels = sorted(Path("mvreml/_core").glob("*.pyx"))
extensions = [
    Extension(
        f"mvreml._core.{p.stem}",
        [str(p)],
        include_dirs=[np.get_include()],
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
