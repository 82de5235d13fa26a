"""Where a run's files live and how they are written: names, atomic writes, Parquet and JSON.

Every file of a run is written through `atomic_write`: to a temporary name in the same folder,
flushed to disk, then renamed over the final name, so a kill leaves the old file or the new one,
never half of one. The manifest of a run at a storage URI is written as one object (see
`tune_mnist.storage`), atomic there too.

>>> import tempfile, pathlib
>>> run = pathlib.Path(tempfile.mkdtemp())
>>> write_json(run / MANIFEST_FILE, {"args": {"seed": 0}})
>>> read_manifest(run)["args"]
{'seed': 0}
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tune_mnist.storage import is_uri, join, read_bytes, write_object

TRIALS_FILE = "trials.parquet"
EPOCHS_FILE = "epochs.parquet"
VAL_PREDICTIONS_FILE = "val_predictions.parquet"
COMPARISON_FILE = "comparison.parquet"
DEPENDENCE_FILE = "dependence.parquet"
IMPORTANCE_FILE = "importance.parquet"
TEST_EVAL_FILE = "test_eval.parquet"
CONFUSION_FILE = "confusion.parquet"
TEST_PREDICTIONS_FILE = "test_predictions.parquet"
TEST_PAIRS_FILE = "test_pairs.parquet"
MANIFEST_FILE = "run_manifest.json"
# The until-decided search's confidence sequence, round by round (tune_mnist.rounds). In a folder:
# a resumed Tune run copies the run folder's top-level .json files to its staging folder and
# uploads them back later (ray.tune.execution.experiment_state.sync_down_experiment_state), which
# would put the state of the interrupted run back over the resumed run's.
SEQUENTIAL_FILE = "until_decided/sequential.json"
REPORT_FILE = "report.html"


class ManifestError(Exception):
    """A run's manifest is missing or unreadable; the message names the file."""


def best_model_file(arm: str) -> str:
    """The exported best model of an arm, e.g. ``best_mixup.keras``."""
    return f"best_{arm}.keras"


def best_savedmodel_dir(arm: str) -> str:
    """The same model as a TensorFlow SavedModel folder, e.g. ``best_mixup_savedmodel``."""
    return f"best_{arm}_savedmodel"


def atomic_write(path: Path, write: Callable[[str], Any]) -> None:
    """Call ``write(temporary_path)``, then move the finished file to ``path`` in one rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())  # the data is on disk before the name points at it
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would hide results from other users
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_dir(path: Path, write: Callable[[str], Any]) -> None:
    """Call ``write(temporary_folder)``, then move the finished folder to ``path`` by renaming.

    A rename is atomic on a local POSIX filesystem, but a folder cannot be renamed over a full one:
    an existing ``path`` is first renamed aside, then deleted. A reader sees the old folder, for
    an instant none, or the new one; never a half-written one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    aside = None
    try:
        write(str(tmp))
        for file in (f for f in tmp.rglob("*") if f.is_file()):
            with open(file, "rb+") as f:
                os.fsync(f.fileno())  # the data is on disk before the name points at it
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp's 0700 would hide results from other users
        if path.exists():
            aside = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
            os.replace(path, aside)  # onto an empty folder: allowed
        os.replace(tmp, path)
    except BaseException:
        if aside is not None and not path.exists():
            os.replace(aside, path)
            aside = None
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | Path, document: dict[str, Any]) -> None:
    """Write ``document`` to a local path (atomically) or to a storage URI (one object)."""
    text = json.dumps(document, indent=2, default=str)
    if is_uri(path):
        write_object(str(path), text.encode())
    else:
        atomic_write(Path(path), lambda tmp: Path(tmp).write_text(text))


def write_parquet(path: Path, frame: pd.DataFrame) -> None:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def copy_file(source: Path, destination: Path) -> None:
    atomic_write(destination, lambda tmp: shutil.copyfile(source, tmp))


def read_manifest(run_dir: str | Path) -> dict[str, Any]:
    """The run's ``run_manifest.json`` (local or at a storage URI) as a dict; ManifestError when
    missing or unreadable."""
    path = join(run_dir, MANIFEST_FILE)
    try:
        manifest = json.loads(read_bytes(path).decode())
    except FileNotFoundError:
        raise ManifestError(f"{path} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ManifestError(f"{path} is unreadable ({type(e).__name__}: {e})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("args"), dict):
        raise ManifestError(f"{path} is unreadable (no 'args' mapping)")
    return manifest
