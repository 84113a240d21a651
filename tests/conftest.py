from __future__ import annotations

import numpy as np
import pytest

from corrkit.bundle import builtin_path, load_bundle


@pytest.fixture(scope="session")
def bundle():
    return load_bundle(builtin_path())


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
