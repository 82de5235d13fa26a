"""The original notebook's way, ported to Ray Tune 2.60: what the `notebook` section times.

One function trial per (model, MixUp on/off): 18 trials for the notebook's nine models. Each trial
loads Fashion-MNIST itself, builds its model, and trains with one `model.fit` call: on NumPy arrays
without MixUp, through the original study's NumPy MixUp loader (bench.baselines) with it; after
every epoch Keras evaluates it on 10,000 mixed images (the test set, mixed once per trial in NumPy)
and the trial reports to Tune. No checkpoints: the notebook kept none.

Same data as the service (the service's split of the same training images, `--train-subset N`)
and the same models: `seed_grid.yaml`'s configurations built with Keras' own batch norm, the
notebook's layers exactly (tests/test_model.py; the batch norm momentum differs, which changes
no computation's cost). The same TensorFlow threads per trial as the service (one per CPU held).

    python scripts/bench/notebook_way.py --train-subset 3000 --max-epochs 1 --storage DIR

prints one JSON line: wall seconds from the start of this process, trials, mean val accuracy.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

STARTED = time.time()  # before Ray and TensorFlow are imported: they are part of the way's cost
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = Path(__file__).resolve().parent
# Ray's local workers inherit this environment: they import `bench` and this checkout's tune_mnist.
os.environ["PYTHONPATH"] = os.pathsep.join(
    filter(None, [str(HERE.parent.parent), str(HERE.parent), os.environ.get("PYTHONPATH")])
)
sys.path[:0] = [str(HERE.parent.parent), str(HERE.parent)]

VAL_IMAGES = 10_000  # the notebook's mixed validation set: the whole test set
MIXUP_SEED = 0


def notebook_trial(config: dict[str, Any]) -> None:
    """One (model, MixUp) trial as the notebook ran it, reporting val_acc every epoch."""
    from tune_mnist.resources import ResourcePlan, configure_tensorflow_threads

    configure_tensorflow_threads(ResourcePlan(cpus_per_trial=config["cpus"]))
    import keras
    import numpy as np
    from ray import tune

    from bench.baselines import original_mixup_loader
    from tune_mnist import data
    from tune_mnist.model import compile_model

    arrays = data.load_arrays("fashion_mnist")
    search = data.split(arrays, "fashion_mnist", train_subset=config["train_subset"])
    x_val, y_val = _mixed(arrays.x_test[:VAL_IMAGES], arrays.y_test[:VAL_IMAGES], config)
    model = compile_model(config["model"], bn_kernel="keras")
    batch = config["model"]["batch_size"]

    class Report(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            tune.report({"epoch": epoch + 1, "val_acc": float((logs or {})["val_acc"])})

    fit = {"epochs": config["max_epochs"], "validation_data": (x_val, y_val), "verbose": 0}
    if config["mixup"]:
        alpha = config["model"]["mixup_alpha"]
        x, y = search.x_train, search.y_train
        loader = original_mixup_loader(x, y, batch_size=batch, alpha=alpha)
        model.fit(loader, callbacks=[Report()], **fit)
    else:
        x = search.x_train.astype(np.float32)[..., None] / 255.0
        y = np.eye(10, dtype=np.float32)[search.y_train]
        model.fit(x, y, batch_size=batch, shuffle=True, callbacks=[Report()], **fit)


def _mixed(x: Any, y: Any, config: dict[str, Any]) -> tuple[Any, Any]:
    """The notebook's mixed validation images: each with a random partner, Beta(alpha) weights."""
    import numpy as np

    rng = np.random.default_rng(MIXUP_SEED)
    alpha = config["model"]["mixup_alpha"]
    images, labels = x.astype(np.float32)[..., None] / 255.0, np.eye(10, dtype=np.float32)[y]
    partner, w = rng.permutation(len(x)), rng.beta(alpha, alpha, size=len(x)).astype(np.float32)
    mixed = w[:, None, None, None] * images + (1 - w[:, None, None, None]) * images[partner]
    return mixed, w[:, None] * labels + (1 - w[:, None]) * labels[partner]


def models(names: list[str] | None) -> list[dict[str, Any]]:
    """seed_grid's configurations (all nine, or those named 'NUM_CONVxNUM_DENSE'), full keys."""
    from tune_mnist.space import KEYS, load_space

    defaults = {k: spec.default for k, spec in KEYS.items()}
    configs = [defaults | c for c in load_space("seed_grid").grid_configs()]
    if names is None:
        return configs
    return [c for c in configs if f"{c['num_conv']}x{c['num_dense']}" in names]


def run(
    train_subset: int, max_epochs: int, storage: Path, names: list[str] | None, cpus: float
) -> dict[str, Any]:
    import ray
    from ray import tune

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    space = {
        "model": tune.grid_search(models(names)),
        "mixup": tune.grid_search([False, True]),
        "train_subset": train_subset,
        "max_epochs": max_epochs,
        "cpus": cpus,
    }
    tuner = tune.Tuner(
        tune.with_resources(notebook_trial, {"cpu": cpus}),
        param_space=space,
        run_config=tune.RunConfig(storage_path=str(storage), name="notebook_way", verbose=0),
    )
    results = tuner.fit()
    errors = [str(r.error) for r in results if r.error]
    if errors:
        raise RuntimeError(f"{len(errors)} notebook trials failed; first: {errors[0][-2000:]}")
    accs = [r.metrics["val_acc"] for r in results]
    return {
        "wall_seconds": time.time() - STARTED,
        "trials": len(results),
        "mean_val_mixed_acc": sum(accs) / len(accs),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-subset", type=int, required=True)
    parser.add_argument("--max-epochs", type=int, required=True)
    parser.add_argument("--storage", type=Path, required=True)
    parser.add_argument("--models", help="comma-separated NUM_CONVxNUM_DENSE (default: all nine)")
    parser.add_argument("--cpus-per-trial", type=float, default=1.0)
    args = parser.parse_args(argv)
    names = args.models.split(",") if args.models else None
    found = run(args.train_subset, args.max_epochs, args.storage, names, args.cpus_per_trial)
    print(json.dumps(found), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
