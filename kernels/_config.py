"""Numba flags for every corrkit kernel, set in one place."""

import os

PARALLEL = os.environ.get("CORRKIT_NUMBA_PARALLEL", "1") != "0"
FASTMATH = False  # exact IEEE sums: results must not depend on the build
CACHE = True
