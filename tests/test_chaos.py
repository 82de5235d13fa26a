"""The short chaos run (scripts/chaos.py): a search of 12 pairs on a 3-node local cluster, two
trial workers and one raylet killed, the S3 server (moto, 127.0.0.1) down for 20 s; every pair
ends exactly once with the metrics of the same search run quietly. About 5 minutes on 2 cores;
the full size (about 100 pairs, 20 minutes) is `python scripts/chaos.py`."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import chaos  # noqa: E402


@pytest.mark.storage
def test_nothing_is_lost_or_changed_by_killed_workers_a_lost_node_and_an_s3_outage():
    settings = chaos.Settings(
        pairs=12, max_epochs=3, train_subset=500, kills=2, kill_every=20, outage=20
    )
    checks, figures = chaos.run(settings)
    assert checks and all(checks.values()), (checks, figures)
