"""The Fashion-MNIST IDX reader."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from corrkit._core.data import DEFAULT_DATA_DIR, load_split
from corrkit.errors import DataError

needs_data = pytest.mark.skipif(not DEFAULT_DATA_DIR.is_dir(), reason="apt-get install dataset-fashion-mnist")


def _write_idx(path, arr, gz=True):
    header = struct.pack(">HBB", 0, 8, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)


def _fake(tmp_path, n_train=60000, n_test=10000, gz=True):
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    for stem, n in (("train", n_train), ("t10k", n_test)):
        _write_idx(tmp_path / f"{stem}-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n, 28, 28)), gz)
        _write_idx(tmp_path / f"{stem}-labels-idx1-ubyte{suffix}", rng.integers(0, 10, n), gz)
    return tmp_path


@needs_data
def test_real_dataset_counts_and_balance():
    train, test = load_split("train"), load_split("test")
    assert train.images.shape == (60000, 28, 28) and test.images.shape == (10000, 28, 28)
    assert np.bincount(train.labels).tolist() == [6000] * 10
    assert np.bincount(test.labels).tolist() == [1000] * 10
    assert train.images.dtype == np.uint8 and 0 < train.images.mean() < 255


def test_reads_plain_and_gzip_idx_identically(tmp_path):
    a = load_split("test", _fake(tmp_path / "gz" if (tmp_path / "gz").mkdir() is None else None))
    b = load_split("test", _fake(tmp_path / "plain" if (tmp_path / "plain").mkdir() is None else None, gz=False))
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)


def test_env_variable_points_to_data(tmp_path, monkeypatch):
    monkeypatch.setenv("CORRKIT_DATA", str(_fake(tmp_path)))
    assert load_split("test").labels.shape == (10000,)


def test_missing_folder_says_how_to_install(tmp_path):
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        load_split("train", tmp_path / "nowhere")


def test_wrong_count_is_rejected(tmp_path):
    with pytest.raises(DataError, match="expected"):
        load_split("test", _fake(tmp_path, n_test=999))


def test_truncated_file_is_rejected(tmp_path):
    folder = _fake(tmp_path, gz=False)
    f = folder / "t10k-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(DataError, match="truncated"):
        load_split("test", folder)
