"""Where a run lives: a local folder, or a URI of any filesystem pyarrow.fs knows (``s3://``,
``gs://``, ``abfs://``, ``hdfs://``), the same URIs Ray Tune takes as its ``storage_path``.

Credentials and endpoint come from each store's usual environment, read by pyarrow as Ray Tune
reads them: for S3 ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``,
``AWS_ENDPOINT_URL`` (an S3-compatible server such as MinIO), ``~/.aws``, or an instance role.

Object stores have no rename. An object is written by one upload (a PUT, or a multipart upload
that the store makes visible only when it completes), so a reader sees the old object or the new
one, never part of one: single files stay atomic. A folder (a SavedModel) is many objects, which
appear one at a time.

The analysis code reads and writes local files: `local_mirror` hands it a local copy of a run that
lives at a URI and uploads what it wrote.

>>> is_uri("s3://bucket/runs"), is_uri("runs"), is_uri("/tmp/s3:/x")
(True, False, False)
>>> join("s3://bucket/runs/", "study", "trials.parquet")
's3://bucket/runs/study/trials.parquet'
>>> split("s3://bucket/runs/study")
('s3://bucket/runs', 'study')
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow.fs as pafs

# --storage-path's default, of the search and of the results command.
DEFAULT_STORAGE_PATH = "./tune_results"
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def is_uri(location: str | os.PathLike[str]) -> bool:
    """True for ``scheme://...``; anything else is a local path."""
    return _SCHEME.match(str(location)) is not None


def resolve(location: str) -> str:
    """A URI as given (less a trailing ``/``); a local path made absolute, ``~`` expanded."""
    if is_uri(location):
        return location.rstrip("/")
    return str(Path(location).expanduser().resolve())


def join(location: str | os.PathLike[str], *names: str) -> str:
    if is_uri(location):
        return "/".join([str(location).rstrip("/"), *names])
    return str(Path(location, *names))


def split(location: str) -> tuple[str, str]:
    """The parent location and the last name (a run location: its storage path and run name)."""
    parent, _, name = str(location).rstrip("/").rpartition("/")
    return parent, name


def _filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    return pafs.FileSystem.from_uri(uri)


def is_file(location: str | os.PathLike[str]) -> bool:
    if not is_uri(location):
        return Path(location).is_file()
    fs, path = _filesystem(str(location))
    return fs.get_file_info(path).type == pafs.FileType.File


def read_bytes(location: str | os.PathLike[str]) -> bytes:
    """The content of a file; FileNotFoundError when there is none."""
    if not is_uri(location):
        return Path(location).read_bytes()
    fs, path = _filesystem(str(location))
    if fs.get_file_info(path).type != pafs.FileType.File:
        raise FileNotFoundError(f"{location} is missing")
    with fs.open_input_stream(path) as stream:
        return stream.read()


def write_object(uri: str, data: bytes) -> None:
    """One upload: the object appears whole, or stays as it was."""
    fs, path = _filesystem(uri)
    with fs.open_output_stream(path) as stream:
        stream.write(data)


def delete_object(uri: str) -> None:
    fs, path = _filesystem(uri)
    fs.delete_file(path)


Snapshot = dict[str, tuple[int, int, int]]


def _snapshot(folder: Path) -> Snapshot:
    """Every file under ``folder`` with its inode, size and mtime: a file replaced by an atomic
    write (a new inode, renamed over the old name) or rewritten in place shows as changed."""
    found = {}
    for file in (f for f in folder.rglob("*") if f.is_file()):
        stat = file.stat()
        found[file.relative_to(folder).as_posix()] = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
    return found


def _download(uri: str, local: Path, *, recursive: bool) -> None:
    fs, path = _filesystem(uri)
    if fs.get_file_info(path).type != pafs.FileType.Directory:
        return  # nothing there yet: an empty mirror
    if recursive:
        pafs.copy_files(path, str(local), source_filesystem=fs)
        return
    for info in fs.get_file_info(pafs.FileSelector(path)):
        if info.type == pafs.FileType.File:
            pafs.copy_files(info.path, str(local / info.base_name), source_filesystem=fs)


def _upload(local: Path, uri: str, before: Snapshot) -> None:
    """Upload the files that are new or changed since ``before``; delete those that went away."""
    fs, path = _filesystem(uri)
    after = _snapshot(local)
    for name in sorted(name for name, stat in after.items() if before.get(name) != stat):
        pafs.copy_files(
            str(local / name),
            f"{path}/{name}",
            destination_filesystem=fs,
        )
    for name in sorted(set(before) - set(after)):  # e.g. a SavedModel folder written anew
        fs.delete_file(f"{path}/{name}")


@contextmanager
def local_mirror(
    location: str | os.PathLike[str], *, recursive: bool = True, upload: bool = True
) -> Iterator[Path]:
    """A local folder holding the run at ``location``.

    A local path is yielded as it is. A URI is downloaded to a temporary folder (with
    ``recursive=False`` only its top-level files); when the block ends without an error, the files
    written or replaced in it are uploaded (``upload=True``), then the copy is deleted.
    """
    if not is_uri(location):
        yield Path(location)
        return
    local = Path(tempfile.mkdtemp(prefix="tune_mnist-mirror-"))
    try:
        _download(str(location), local, recursive=recursive)
        before = _snapshot(local)
        yield local
        if upload:
            _upload(local, str(location), before)
    finally:
        shutil.rmtree(local, ignore_errors=True)
