"""The helpers of scripts/benchmark.py, one module per job.

They live beside the script, not in tune_mnist/: the service's own functions are what gets
measured, and the benchmark must not become part of what it measures.
"""

from __future__ import annotations

from pathlib import Path

# Worker processes re-run the entry point (`benchmark.py --worker SPEC`), so they import the same
# checkout's tune_mnist and this package the same way the parent did.
SCRIPT = Path(__file__).resolve().parent.parent / "benchmark.py"
REPO = SCRIPT.parent.parent
