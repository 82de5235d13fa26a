"""tune_mnist: hyperparameter searches on Ray Tune that answer whether MixUp helps.

From Python: ``from tune_mnist import search, SearchConfig`` (`tune_mnist.tuning.search`, whose
results are those `tune_mnist.results.load` reads). They are imported on first use, so that
``import tune_mnist`` alone starts neither Ray nor TensorFlow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tune_mnist.config import SearchConfig
    from tune_mnist.tuning import SearchInterrupted, search

__all__ = ["SearchConfig", "SearchInterrupted", "search"]
_HOMES = {
    "search": "tune_mnist.tuning",
    "SearchConfig": "tune_mnist.config",
    "SearchInterrupted": "tune_mnist.tuning",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'tune_mnist' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
