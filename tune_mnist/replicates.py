"""Every pair an independent replicate: its seed, derived from the run, its configuration and its
replicate number.

A pair's initial weights, batch order, MixUp draws and dropout masks all come from its pair seed
(tune_mnist/trainable.py). Were they seeded with the space's `seed` (the replicate number) alone,
pairs of different architectures with the same replicate number would share them, and the
comparison would have to treat each replicate number as a cluster of dependent pairs. Hashing the
whole configuration gives every pair its own streams, and a resumed or retried pair the same ones.

>>> config = {"num_conv": 2, "dropout": 0.25, "seed": 0}
>>> pair_seed(config, run_seed=0) == pair_seed(dict(reversed(config.items())), run_seed=0)
True
>>> pair_seed(config, run_seed=0) != pair_seed(config | {"seed": 1}, run_seed=0)
True
>>> pair_seed(config, run_seed=0) == pair_seed(config | {"mixup": True}, run_seed=0)  # both arms
True
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

# A key the searchers add to every configuration they draw or propose (never shown in labels): two
# samples of a random space whose draws happen to be equal are still two replicates.
SAMPLE_KEY = "sample"
# The run manifest's entry that marks a run of independent replicates. A run without it seeded each
# pair with its replicate number alone: pairs of different configurations sharing that number share
# their streams, so it resumes that way and its comparison treats each number as a cluster.
MANIFEST_MARK = {"replicates": "independent"}
# Pair seeds fit every seeded API the trainable feeds (keras.utils.set_random_seed, NumPy).
SEED_MODULUS = 2**31
# The arm is not part of a pair's identity: both arms share the pair's seed.
_NOT_HASHED = ("mixup",)


def pair_seed(config: dict[str, Any], run_seed: int) -> int:
    """The seed of the pair `config` (its `seed` key: the replicate number) in the run `run_seed`.

    A SHA-256 of a canonical JSON (sorted keys, no spaces), so equal on every machine, process and
    Python version (the built-in hash() of a string is salted per process).
    """
    hashed = {key: value for key, value in config.items() if key not in _NOT_HASHED}
    text = json.dumps(
        {"run_seed": run_seed, "config": hashed},
        sort_keys=True,
        separators=(",", ":"),
        default=_plain,
    )
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % SEED_MODULUS


def marked_independent(manifest: dict[str, Any]) -> bool:
    """Whether a run manifest marks its run's pairs as independent replicates (MANIFEST_MARK)."""
    return all(manifest.get(key) == value for key, value in MANIFEST_MARK.items())


def _plain(value: Any) -> Any:
    """A NumPy scalar as the Python number it holds (JSON knows no other types)."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"pair_seed: {value!r} ({type(value).__name__}) is not a JSON value")
