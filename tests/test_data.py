import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from tune_mnist import data
from tune_mnist.data import DataError


def write_idx(path: Path, array: np.ndarray, *, truncate: int = 0) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    body = array.astype(np.uint8).tobytes()
    with gzip.open(path, "wb") as f:
        f.write(header + body[: len(body) - truncate])


def fake_full_dataset(directory: Path, *, truncate: int = 0) -> None:
    """A full-size IDX dataset made from the real mnist_sample digits, tiled to 60,000 / 10,000."""
    sample = data.load_mnist_sample()
    train_x = np.resize(sample.x_train, (60_000, 28, 28))
    train_y = np.resize(sample.y_train, 60_000)
    test_x = np.resize(sample.x_test, (10_000, 28, 28))
    test_y = np.resize(sample.y_test, 10_000)
    directory.mkdir(parents=True, exist_ok=True)
    write_idx(directory / data.IDX_FILES["x_train"], train_x, truncate=truncate)
    write_idx(directory / data.IDX_FILES["y_train"], train_y)
    write_idx(directory / data.IDX_FILES["x_test"], test_x)
    write_idx(directory / data.IDX_FILES["y_test"], test_y)


def test_mnist_sample_is_real_digits_split_4500_500():
    arrays = data.load_arrays("mnist_sample")
    assert arrays.x_train.shape == (4500, 28, 28) and arrays.x_test.shape == (500, 28, 28)
    assert arrays.x_train.dtype == np.uint8 and set(np.unique(arrays.y_train)) == set(range(10))
    # Real digits: dark background, bright strokes.
    assert arrays.x_train[:, 0, 0].max() == 0 and arrays.x_train.max() == 255


def test_fashion_mnist_from_debian_package():
    arrays = data.load_arrays("fashion_mnist")
    assert arrays.x_train.shape == (60_000, 28, 28) and arrays.x_test.shape == (10_000, 28, 28)
    assert arrays.source == str(data.DEBIAN_FASHION_MNIST)


def test_data_dir_idx_files_are_preferred(tmp_path):
    fake_full_dataset(tmp_path / "mnist")
    arrays = data.load_arrays("mnist", tmp_path)
    assert arrays.source == str(tmp_path / "mnist")
    assert arrays.x_train.shape == (60_000, 28, 28)


def test_data_dir_npz(tmp_path, monkeypatch):
    sample = data.load_mnist_sample()
    np.savez(
        tmp_path / "mnist.npz",
        x_train=np.resize(sample.x_train, (60_000, 28, 28)), y_train=np.resize(sample.y_train, 60_000),
        x_test=np.resize(sample.x_test, (10_000, 28, 28)), y_test=np.resize(sample.y_test, 10_000),
    )
    monkeypatch.setenv("TUNE_MNIST_DATA_DIR", str(tmp_path))
    assert data.load_arrays("mnist").source == str(tmp_path / "mnist.npz")


def test_truncated_file_gives_clear_error(tmp_path):
    fake_full_dataset(tmp_path / "fashion-mnist", truncate=784 * 10)
    with pytest.raises(DataError, match="truncated"):
        data.load_arrays("fashion_mnist", tmp_path)


def test_corrupt_npz_gives_clear_error(tmp_path):
    (tmp_path / "mnist.npz").write_bytes(b"not a zip file at all")
    with pytest.raises(DataError, match="not a readable .npz"):
        data.load_arrays("mnist", tmp_path)


def test_label_out_of_range_is_rejected(tmp_path):
    fake_full_dataset(tmp_path / "mnist")
    write_idx(tmp_path / "mnist" / data.IDX_FILES["y_test"], np.full(10_000, 12))
    with pytest.raises(DataError, match="label 12"):
        data.load_arrays("mnist", tmp_path)


def test_missing_dataset_says_what_was_tried(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "KERAS_CACHE", tmp_path / "cache")
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.keras: Keras must try (and here fail) to download
    with pytest.raises(DataError) as err:
        data.load_arrays("mnist", tmp_path / "nowhere")
    message = str(err.value)
    assert "--data-dir" in message and "mnist_sample" in message and str(tmp_path / "nowhere") in message


def test_split_is_seeded_disjoint_and_never_touches_test():
    arrays = data.load_arrays("mnist_sample")
    a = data.split(arrays, "mnist_sample", val_fraction=0.1, seed=3)
    b = data.split(arrays, "mnist_sample", val_fraction=0.1, seed=3)
    assert len(a.x_val) == 450 and len(a.x_train) == 4050
    assert np.array_equal(a.x_val, b.x_val)
    train_keys = {x.tobytes() for x in a.x_train}
    assert not any(x.tobytes() in train_keys for x in a.x_val if x.any())
    subset = data.split(arrays, "mnist_sample", train_subset=100, seed=3)
    assert len(subset.x_train) == 100 and np.array_equal(subset.x_val, a.x_val)


def test_mixed_validation_is_identical_for_one_seed_and_labels_are_soft():
    arrays = data.load_arrays("mnist_sample")
    first = data.split(arrays, "mnist_sample", seed=1)
    again = data.split(arrays, "mnist_sample", seed=1)
    x1, y1 = data.apply_mix(first.x_val, first.y_val, first.val_mix)
    x2, y2 = data.apply_mix(again.x_val, again.y_val, again.val_mix)
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert ((first.val_mix.weight >= 0) & (first.val_mix.weight <= 1)).all()
    np.testing.assert_allclose(y1.sum(axis=1), 1.0, rtol=1e-6)
    assert x1.min() >= 0 and x1.max() <= 1
    other = data.split(arrays, "mnist_sample", seed=2)
    assert not np.array_equal(other.val_mix.weight, first.val_mix.weight)
