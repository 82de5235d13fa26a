"""The S3 server goes away mid-search and comes back: what does a search on a bucket do?

Starts moto's S3 server on 127.0.0.1 (a random port; its objects live in this process, so they
survive a restart), runs a real search with `--storage-path s3://...`, stops the server after the
first checkpoint reached the bucket, starts it again `--down` seconds later, and waits for the
search. If it did not finish, runs `--resume` once. Prints what happened and whether anything
was lost (every pair TERMINATED, each epoch once in epochs.parquet).

    python scripts/storage_faults.py --down 20
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pyarrow.fs as pafs

SPACE = "num_conv: 0\nnum_dense: 0\nbatch_size: 50\nseed: {grid: [0, 1, 2, 3]}\n"
BUCKET = "faults"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def first_checkpoint(uri: str, timeout: float = 300) -> None:
    fs, path = pafs.FileSystem.from_uri(uri)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
        if any("/checkpoint_" in f.path for f in found):
            return
        time.sleep(0.2)
    raise SystemExit("no checkpoint reached the bucket")


def search(args: list[str], cwd: Path, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "tune_mnist.run", *args]
    return subprocess.Popen(command, cwd=cwd, stdout=log.open("w"), stderr=subprocess.STDOUT)


def outcome(log: Path) -> str:
    """The search's summary lines: pair counts, failed pairs and their errors, the last line."""
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    kept = [line[:160] for line in lines if line.startswith(("Pairs:", "ERROR:", "error:"))]
    return "\n    ".join([*kept, lines[-1]])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--down", type=float, default=20, help="seconds the server stays down")
    args = parser.parse_args()
    from moto.server import ThreadedMotoServer

    port = free_port()
    os.environ.update(
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
    )
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    pafs.S3FileSystem(endpoint_override=endpoint, allow_bucket_creation=True).create_dir(BUCKET)
    work = Path(tempfile.mkdtemp(prefix="storage_faults_"))
    (work / "space.yaml").write_text(SPACE)
    uri = f"s3://{BUCKET}/runs/down"
    where = ["--storage-path", f"s3://{BUCKET}/runs", "--name", "down"]
    tiny = ["--train-subset", "200", "--max-epochs", "3", "--max-concurrent", "1"]
    driver = search(["--space", "space.yaml", *tiny, *where], work, work / "first.txt")
    first_checkpoint(uri)
    server.stop()
    stopped = time.monotonic()
    print(f"S3 server stopped after the first checkpoint; down for {args.down:.0f} s")
    time.sleep(args.down)
    server.start()
    print(f"S3 server back after {time.monotonic() - stopped:.0f} s")
    status = driver.wait(timeout=900)
    print(f"search: exit {status}\n    {outcome(work / 'first.txt')}")
    if status != 0:
        resumed = search(["--resume", *where], work, work / "resume.txt")
        status = resumed.wait(timeout=900)
        print(f"--resume: exit {status}\n    {outcome(work / 'resume.txt')}")
    trials = pd.read_parquet(f"{uri}/trials.parquet")
    epochs = pd.read_parquet(f"{uri}/epochs.parquet")
    statuses = trials.drop_duplicates("pair_id")["status"].value_counts().to_dict()
    duplicated = int(epochs.duplicated(["trial_id", "epoch"]).sum())
    complete = trials["epochs_run"].eq(3).all()
    print(f"pairs: {statuses}; every arm ran 3 epochs: {complete}; duplicated epochs: {duplicated}")
    server.stop()
    return 0 if status == 0 and set(statuses) == {"TERMINATED"} and complete else 1


if __name__ == "__main__":
    sys.exit(main())
