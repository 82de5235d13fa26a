"""Datasets: find, read and validate MNIST-family images, then split them for a search.

Images stay uint8 (28x28) everywhere the data is stored or shipped: a quarter of the memory of
float32 in the Ray object store and in every trial. Scaling to [0, 1] happens per batch in the
input pipeline.
"""

from __future__ import annotations

import contextlib
import gzip
import importlib.resources
import os
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DATASETS = ("mnist_sample", "mnist", "fashion_mnist")
NUM_CLASSES = 10
IMAGE_SHAPE = (28, 28)
PIXEL_MAX = 255.0  # uint8 images are scaled to [0, 1] by this
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
KERAS_CACHE = Path("~/.keras/datasets").expanduser()
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}
FULL_COUNTS = {"train": 60_000, "test": 10_000}
SAMPLE_TEST_SIZE = 500

CLASS_NAMES = {
    "mnist": [str(d) for d in range(10)],
    "mnist_sample": [str(d) for d in range(10)],
    "fashion_mnist": [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ],
}


class DataError(Exception):
    """A dataset could not be found or is broken; the message says how to fix it."""


@dataclass(frozen=True)
class Arrays:
    """A train/test pair of uint8 images (n, 28, 28) and uint8 labels (n,)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str


@dataclass(frozen=True)
class MixPlan:
    """One fixed MixUp of a set: image i is weight[i] * x[i] + (1 - weight[i]) * x[partner[i]]."""

    partner: np.ndarray
    weight: np.ndarray


@dataclass(frozen=True)
class SearchData:
    """What every trial of a search receives through the Ray object store."""

    name: str
    source: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    val_mix: MixPlan
    class_names: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        return (
            f"{self.name}: {len(self.x_train)} training and {len(self.x_val)} validation images "
            f"from {self.source}"
        )


def mix_plan(n: int, *, alpha: float, seed: int) -> MixPlan:
    """A seeded MixUp of n samples: each mixed with a random partner, weight ~ Beta(alpha, alpha).

    The same seed always gives the same plan, so the mixed validation set is identical for every
    trial of a run and `val_mixed_acc` is comparable across trials.
    """
    rng = np.random.default_rng(seed)
    return MixPlan(
        partner=rng.permutation(n).astype(np.int64),
        weight=rng.beta(alpha, alpha, size=n).astype(np.float32),
    )


def scale_images(x: np.ndarray) -> np.ndarray:
    """uint8 images (n, 28, 28) as float32 in [0, 1] with a channel axis: (n, 28, 28, 1)."""
    return (x.astype(np.float32) / PIXEL_MAX)[..., None]


def one_hot(y: np.ndarray) -> np.ndarray:
    """Integer labels as float32 one-hot rows."""
    return np.eye(NUM_CLASSES, dtype=np.float32)[y]


def apply_mix(x: np.ndarray, y: np.ndarray, plan: MixPlan) -> tuple[np.ndarray, np.ndarray]:
    """The mixed images (float32 in [0, 1], (n, 28, 28, 1)) and soft labels of a MixPlan."""
    w = plan.weight
    images = scale_images(x)
    mixed = w[:, None, None, None] * images + (1 - w[:, None, None, None]) * images[plan.partner]
    labels = one_hot(y)
    soft = w[:, None] * labels + (1 - w[:, None]) * labels[plan.partner]
    return mixed, soft


def _validate(arrays: Arrays, *, expect_counts: dict[str, int] | None) -> Arrays:
    for split in ("train", "test"):
        x, y = getattr(arrays, f"x_{split}"), getattr(arrays, f"y_{split}")
        where = f"{arrays.source} ({split})"
        if x.ndim != 3 or x.shape[1:] != IMAGE_SHAPE:
            raise DataError(f"{where}: images have shape {x.shape}, expected (n, 28, 28)")
        if y.ndim != 1 or len(y) != len(x):
            raise DataError(f"{where}: {len(y)} labels for {len(x)} images")
        if x.dtype != np.uint8 or y.dtype != np.uint8:
            raise DataError(f"{where}: expected uint8 images and labels, got {x.dtype}/{y.dtype}")
        if len(y) and int(y.max()) >= NUM_CLASSES:
            raise DataError(f"{where}: label {int(y.max())} outside 0-9")
        if expect_counts and len(x) != expect_counts[split]:
            raise DataError(
                f"{where}: {len(x)} images, expected {expect_counts[split]} (truncated file?)"
            )
    return arrays


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (optionally gzipped) of unsigned bytes, checking its header and length."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read ({e}); delete it and fetch it again") from e
    if len(raw) < 4:
        raise DataError(f"{path}: not an IDX file (too short)")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08 or ndim not in (1, 3):
        raise DataError(f"{path}: not an IDX file of unsigned bytes")
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DataError(f"{path}: header says {dims} but holds {body.size} bytes (truncated file?)")
    return body.reshape(dims)


def read_idx_dir(directory: Path) -> Arrays:
    parts = {key: read_idx(directory / name) for key, name in IDX_FILES.items()}
    return Arrays(**parts, source=str(directory))


def read_npz(path: Path) -> Arrays:
    try:
        with np.load(path, allow_pickle=False) as f:
            parts = {key: np.asarray(f[key]) for key in IDX_FILES}
    except KeyError as e:
        raise DataError(
            f"{path}: missing array {e}; expected x_train, y_train, x_test, y_test"
        ) from None
    except Exception as e:  # zipfile, pickle and OS errors all mean a broken file here
        raise DataError(f"{path}: not a readable .npz ({type(e).__name__}: {e})") from e
    return Arrays(**parts, source=str(path))


def _candidates(name: str, data_dir: Path | None) -> list[Path]:
    """Where a full dataset may lie, in the order they are tried."""
    stem = {"mnist": "mnist", "fashion_mnist": "fashion-mnist"}[name]
    places: list[Path] = []
    if data_dir is not None:
        places += [data_dir / f"{stem}.npz", data_dir / f"{name}.npz", data_dir / stem, data_dir]
    places += [KERAS_CACHE / f"{stem}.npz", KERAS_CACHE / stem]
    if name == "fashion_mnist":
        places.append(DEBIAN_FASHION_MNIST)
    return list(dict.fromkeys(places))


def _read_first(places: list[Path]) -> Arrays | None:
    for place in places:
        if place.is_file() and place.suffix == ".npz":
            return read_npz(place)
        if place.is_dir() and all((place / f).is_file() for f in IDX_FILES.values()):
            return read_idx_dir(place)
    return None


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Hide TensorFlow's C++ start-up log lines, so a failed download still ends in one line."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _keras_download(name: str) -> Arrays:
    with native_stderr_silenced():
        import keras  # deferred: importing TensorFlow costs seconds the other paths do not need

        module = {"mnist": keras.datasets.mnist, "fashion_mnist": keras.datasets.fashion_mnist}[
            name
        ]
        (x_train, y_train), (x_test, y_test) = module.load_data()
    return Arrays(x_train, y_train, x_test, y_test, source=f"keras.datasets.{name} download")


# The 5,000 digits ship inside this package (tune_mnist/sample_data, see its NOTICE): the default
# dataset must work offline on a bare install, without a dataset package and its dependencies.
SAMPLE_FILE = "sample_data/mnist_sample.npz"
# The mnist_sample test split is drawn once with this seed, whatever a search's --seed: the test
# set must not change with the search's seed, or runs with different seeds would be scored on
# different test images (and a test image could land in another run's training split).
SAMPLE_TEST_SEED = 0


def _sample_path() -> Path:
    # A wheel or an editable install: the package's own folder, a real file either way.
    return Path(str(importlib.resources.files("tune_mnist").joinpath(SAMPLE_FILE)))


def load_mnist_sample() -> Arrays:
    """The 5,000 real MNIST digits shipped with tune_mnist: 4,500 to search on, 500 held out as
    test.

    The held-out 500 are always the same images (``SAMPLE_TEST_SEED``).
    """
    path = _sample_path()
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {key: np.asarray(f[key]) for key in ("images", "labels") if key in f.files}
    except Exception as e:  # zipfile, pickle and OS errors all mean a broken file here
        raise DataError(
            f"{path}: not a readable .npz ({type(e).__name__}: {e}); reinstall tune_mnist"
        ) from e
    missing = {"images", "labels"} - set(arrays)
    if missing:
        raise DataError(f"{path}: no array {', '.join(sorted(missing))}; reinstall tune_mnist")
    x, y = arrays["images"], arrays["labels"]
    order = np.random.default_rng(SAMPLE_TEST_SEED).permutation(len(x))
    test, train = order[:SAMPLE_TEST_SIZE], order[SAMPLE_TEST_SIZE:]
    return Arrays(x[train], y[train], x[test], y[test], source=str(path))


def load_arrays(name: str, data_dir: str | Path | None = None, *, seed: int = 0) -> Arrays:
    """Find and read a dataset; raise DataError with what was tried and how to fix it.

    ``seed`` changes nothing today: every dataset's test split is fixed (the full datasets ship
    theirs, mnist_sample draws its own with ``SAMPLE_TEST_SEED``). It stays in the signature so
    callers that pass a run's seed keep working.
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if name == "mnist_sample":
        return _validate(load_mnist_sample(), expect_counts=None)
    data_dir = data_dir or os.environ.get("TUNE_MNIST_DATA_DIR")
    places = _candidates(name, Path(data_dir).expanduser() if data_dir else None)
    arrays = _read_first(places)
    if arrays is None:
        try:
            arrays = _keras_download(name)
        except Exception as e:
            tried = ", ".join(str(p) for p in places)
            reason = (str(e).splitlines() or [type(e).__name__])[0][:200]
            raise DataError(
                f"{name} not found (tried {tried}, then Keras' download: {reason}); "
                f"put the .npz or the four IDX .gz files in a folder and pass --data-dir, "
                f"or use --dataset mnist_sample"
            ) from None
    return _validate(arrays, expect_counts=FULL_COUNTS)


def check_split(val_fraction: float, train_subset: int | None) -> None:
    """The rules of a split, checked by the command line before anything is loaded."""
    if not 0 < val_fraction < 1:
        raise DataError(f"--val-fraction must be between 0 and 1, got {val_fraction}")
    if train_subset is not None and train_subset < 1:
        raise DataError(f"--train-subset must be positive, got {train_subset}")


def split(
    arrays: Arrays,
    name: str,
    *,
    val_fraction: float = 0.1,
    train_subset: int | None = None,
    seed: int = 0,
    val_mixup_alpha: float = 0.2,
) -> SearchData:
    """Carve a fixed, seeded validation set out of the training images; the test set stays out."""
    check_split(val_fraction, train_subset)
    order = np.random.default_rng(seed).permutation(len(arrays.x_train))
    n_val = max(1, round(val_fraction * len(order)))
    val, train = order[:n_val], order[n_val:]
    if train_subset is not None:
        train = train[:train_subset]
    return SearchData(
        name=name,
        source=arrays.source,
        x_train=arrays.x_train[train],
        y_train=arrays.y_train[train],
        x_val=arrays.x_train[val],
        y_val=arrays.y_train[val],
        val_mix=mix_plan(n_val, alpha=val_mixup_alpha, seed=seed),
        class_names=CLASS_NAMES[name],
    )
