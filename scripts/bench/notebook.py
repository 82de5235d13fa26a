"""The `notebook` section: the original grid end to end, the service against the notebook's way.

Both run as their own processes on the same training images: `python -m tune_mnist.run` with
`seed_grid.yaml` (9 pairs) and bench/notebook_way.py (the same nine models as 18 trials, the
notebook's way), each timed from its command's start to its end. Full mode: 1 epoch x 3,000 and
5 epochs x 10,000 training images. Quick mode: 1 epoch x 3,000 with two of the nine models
(num_conv 2, num_dense 0 and 1), so that the section fits in about 90 s.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import REPO
from bench.context import Context, log
from bench.service import run_service, service_env, write_space

QUICK_MODELS = ("2x0", "2x1")  # NUM_CONVxNUM_DENSE
SIZES = {"quick": [(1, 3000)], "full": [(1, 3000), (5, 10000)]}  # (epochs, training images)
TARGET_SPEEDUP = 3.0
# Images each side predicts besides training, per model and epoch: the notebook's trials (plain,
# MixUp) 10,000 mixed test images each; the service's arms (plain, MixUp) the 6,000 validation
# images of its default split clean and mixed. After the search the service also scores its two
# best models on the 10,000 test images, clean and mixed.
NOTEBOOK_VAL_PER_MODEL_EPOCH = 2 * 10_000
SERVICE_VAL_PER_MODEL_EPOCH = 2 * 2 * 6_000
SERVICE_TEST_IMAGES = 2 * 2 * 10_000


def notebook_section(ctx: Context) -> dict[str, Any]:
    models = QUICK_MODELS if ctx.quick else None
    space = _space(ctx.scratch, models)
    pairs = len(models) if models else 9
    runs = {}
    for epochs, images in SIZES["quick" if ctx.quick else "full"]:
        size = f"{epochs}x{images}"
        log(f"notebook: the notebook's way, {size}")
        notebook = _notebook_way(ctx.scratch / f"notebook-{size}", images, epochs, models)
        log(f"notebook: the service, {size}")
        args = ["--space", str(space), "--dataset", "fashion_mnist", "--seeds", "1"]
        args += ["--train-subset", str(images), "--max-epochs", str(epochs)]
        service = run_service(args, ctx.scratch / "runs", f"notebook-{size}")
        runs[size] = {
            "epochs": epochs,
            "train_images": images,
            "notebook_way_seconds": notebook["wall_seconds"],
            "service_seconds": service["wall_seconds"],
            "service_phase_seconds": service["seconds"],
            "speedup": notebook["wall_seconds"] / service["wall_seconds"],
            "notebook_way_mean_val_mixed_acc": notebook["mean_val_mixed_acc"],
            "images_predicted": {
                "notebook_way": pairs * epochs * NOTEBOOK_VAL_PER_MODEL_EPOCH,
                "service": pairs * epochs * SERVICE_VAL_PER_MODEL_EPOCH + SERVICE_TEST_IMAGES,
            },
            "images_trained": 2 * pairs * epochs * images,
        }
    return {
        "models": f"{', '.join(models)} of seed_grid.yaml" if models else "seed_grid.yaml",
        "pairs": pairs,
        "target_speedup": TARGET_SPEEDUP,
        "runs": runs,
    }


def _space(scratch: Path, models: tuple[str, ...] | None) -> Path:
    """seed_grid.yaml itself, or a copy reduced to the quick models."""
    seed_grid = REPO / "search_spaces" / "seed_grid.yaml"
    if models is None:
        return seed_grid
    import yaml

    keys = yaml.safe_load(seed_grid.read_text())
    keys["num_conv"] = {"grid": sorted({int(m.split("x")[0]) for m in models})}
    keys["num_dense"] = {"grid": sorted({int(m.split("x")[1]) for m in models})}
    return write_space(scratch, "notebook_quick", keys)


def _notebook_way(
    storage: Path, images: int, epochs: int, models: tuple[str, ...] | None
) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).with_name("notebook_way.py"))]
    command += ["--train-subset", str(images), "--max-epochs", str(epochs)]
    command += ["--storage", str(storage)]
    if models:
        command += ["--models", ",".join(models)]
    started = time.time()
    done = subprocess.run(
        command, capture_output=True, text=True, env=service_env(), cwd=REPO, check=False
    )
    if done.returncode:
        raise RuntimeError(f"notebook_way.py failed ({done.returncode}):\n{done.stderr[-3000:]}")
    found = json.loads(done.stdout.strip().splitlines()[-1])
    # From the command's start, as the service is timed (the script's own figure starts later).
    return {**found, "wall_seconds": time.time() - started}
