"""The Ray Tune trainable: one trial trains both arms of a pair, plain and MixUp, in lockstep.

The two arms start from the same initial weights and see the same batches in the same order (the
MixUp arm blends them), one epoch at a time. After every epoch the trial reports both arms'
metrics, the pair's score `pair_val_acc` (the mean of the arms' `val_acc`: what ASHA and the
searcher judge, so a pair is stopped or continued as a whole) and a checkpoint, so a failed
trial can be retried from its last epoch and `--resume` can continue it.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import tempfile
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from tune_mnist.checkpoint import (
    CheckpointUnreadable,
    earlier_checkpoints,
    load_model,
    load_predictions,
    load_state,
    save_checkpoint,
)
from tune_mnist.data import (
    SearchData,
    apply_mix,
    native_stderr_silenced,
    one_hot,
    scale_images,
)
from tune_mnist.metrics import CHANCE_ACCURACY, score
from tune_mnist.replicates import pair_seed
from tune_mnist.resources import (
    WORKER_RSS,
    ResourcePlan,
    configure_tensorflow_gpus,
    configure_tensorflow_threads,
    process_rss_mib,
)
from tune_mnist.space import ARMS

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ray import tune

# Workers' output reaches the driver's terminal (search._init_ray), where Tune's INFO line for
# every saved checkpoint (every epoch of every pair) would drown the progress table.
logging.getLogger("ray.train").setLevel(logging.WARNING)

PAIR_METRIC = "pair_val_acc"
# Testing hook, never set in normal use: a comma-separated list of faults. "error:KEY=VALUE" makes
# every attempt of the trials whose config has KEY == VALUE raise; "nan:KEY=VALUE" gives their
# MixUp arm NaN weights (nan-plain:KEY=VALUE the plain arm's) at the start of every attempt, so
# training really produces a NaN loss; "nan@E:KEY=VALUE" (or nan-plain@E) does so just before
# epoch E, so the arm diverges after E - 1 good epochs; "hang:KEY=VALUE" (or hang@E) makes the
# trial's process sleep forever, alive, at the start of every attempt (or before epoch E); "oom"
# makes it allocate memory until Ray's memory monitor kills it. Used by
# tests/test_reliability.py and tests/test_waits.py to exercise ERROR, DIVERGED and
# --trial-timeout end to end.
FAULT_ENV = "TUNE_MNIST_TESTING_FAULT"
# "1" in the workers of a search without --verbose (search._init_ray): TensorFlow's C++ start-up
# lines (oneDNN notice, CUDA probing on a machine without a GPU) are then not shown.
QUIET_ENV = "TUNE_MNIST_QUIET"


class InjectedFault(RuntimeError):
    """Raised by the testing hook FAULT_ENV."""


FAULT_KINDS = ("error", "nan", "nan-plain", "hang", "oom")
OOM_FAULT_LIMIT_MIB = 8192  # "oom": where the hook gives up waiting for the memory monitor


def injected_faults(config: dict[str, Any]) -> dict[str, int | None]:
    """The faults FAULT_ENV asks for this trial ('error', 'nan' (MixUp arm), 'nan-plain'), each
    with the epoch it strikes before, or None: at the start of every attempt."""
    found: dict[str, int | None] = {}
    for spec in os.environ.get(FAULT_ENV, "").split(","):
        kind, _, selector = spec.strip().partition(":")
        kind, _, epoch = kind.partition("@")
        key, _, value = selector.partition("=")
        if kind in FAULT_KINDS and key in config and str(config[key]).lower() == value.lower():
            found[kind] = int(epoch) if epoch else None
    return found


@dataclass(frozen=True)
class TrialSettings:
    """Run-wide settings every trial shares (not searched over)."""

    max_epochs: int
    patience: int | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    # The run's --seed, which every pair seed derives from (tune_mnist/replicates.py).
    run_seed: int = 0
    # False only for a resumed run made before pairs were independent replicates: its pairs keep
    # being seeded with the replicate number alone, so they continue exactly as they started.
    independent_replicates: bool = True
    # --trial-timeout: a trial that reports no epoch for this many seconds has its process ended
    # (waits.Watchdog) and is retried like any failure; None: no limit.
    trial_timeout_s: float | None = None
    # --retry-delay: a retried trial first waits this long, doubling per retry (waits.retry_delay).
    retry_delay_s: float = 0.0
    # The run's folder or URI: each epoch's scalars go to its tensorboard/ folder while the search
    # runs (tensorboard_events.write_live_epoch). None: no live TensorBoard files.
    run_location: str | None = None

    def seed_of(self, config: dict[str, Any]) -> int:
        """The seed of the pair `config`: its initial weights, batches, MixUp draws, dropout."""
        if self.independent_replicates:
            return pair_seed(config, self.run_seed)
        return int(config["seed"])


@dataclass
class ValidationSets:
    """The clean validation images and their fixed MixUp, as the models take them.

    Held as one array, clean images first, so an arm's validation is one `predict` call (one
    input pipeline and one pass of Keras' per-call set-up per epoch, not two).
    """

    images_then_mixed: np.ndarray
    labels: np.ndarray
    mixed_labels: np.ndarray

    @classmethod
    def of(cls, data: SearchData) -> ValidationSets:
        mixed_images, mixed_labels = apply_mix(data.x_val, data.y_val, data.val_mix)
        both = np.concatenate([scale_images(data.x_val), mixed_images])
        return cls(both, one_hot(data.y_val), mixed_labels)


@dataclass
class PairState:
    """What a checkpoint must carry besides the models to continue a pair exactly."""

    epoch: int = 0
    best_pair_val_acc: float = -1.0
    epochs_since_best: int = 0
    diverged: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(ARMS, False))
    # Once an arm diverged at epoch e: e - 1, the pair's compared epoch (the last both arms ran),
    # whose models the checkpoints then carry besides the latest ones. None while no arm diverged.
    compared_epoch: int | None = None

    def active_arms(self) -> list[str]:
        return [arm for arm in ARMS if not self.diverged[arm]]


def set_threads(cpus: float) -> None:
    """Give TensorFlow as many threads as the trial holds CPUs.

    Without this each trial starts one thread per core of the machine and concurrent trials fight
    over the cores. Must run before TensorFlow executes its first op in this process.
    """
    try:
        configure_tensorflow_threads(ResourcePlan(cpus_per_trial=cpus))
    except RuntimeError:
        pass  # this worker already ran TensorFlow (a reused actor): keep its thread pools


def import_tensorflow() -> None:
    """Ray's worker setup hook: import TensorFlow and Keras as soon as a worker process starts.

    Ray starts workers while the driver is still setting up Tune, so the import (about 6 s on a
    2-core machine) no longer delays the first epoch. Runs no TensorFlow op, so set_threads still
    works.
    """
    with _quiet():
        import keras  # noqa: F401

        import tune_mnist.model  # noqa: F401
        import tune_mnist.pipeline  # noqa: F401


def _quiet(*, gpus_wanted: bool = False) -> AbstractContextManager[None]:
    """Hide native stderr in a quiet search; never while GPUs are probed for a trial that wants one,
    whose CUDA errors are the diagnosis."""
    quiet = os.environ.get(QUIET_ENV) == "1" and not gpus_wanted
    return native_stderr_silenced() if quiet else nullcontext()


def _no_exit_reports() -> None:
    """Keep "Exception ignored in: <function WeakSet...>" and its traceback out of the terminal.

    Ray's workers exit on SIGTERM by raising SystemExit from a signal handler (a worker Tune stops,
    a reused worker retired). When the signal lands while Python runs a weakref callback or a
    finalizer, the exit cannot propagate and Python prints it as an ignored exception, which Ray
    relays to the driver's terminal (2 workers of a 10,000-trial search, scripts/scale.py). Only
    the report is dropped: Python had ignored the exit already. Idempotent.
    """
    previous = sys.unraisablehook
    if getattr(previous, "tune_mnist_no_exit", False):
        return

    def hook(unraisable: Any) -> None:
        if not isinstance(unraisable.exc_value, SystemExit):
            previous(unraisable)

    hook.tune_mnist_no_exit = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook


def train_pair(config: dict[str, Any], data: SearchData, settings: TrialSettings) -> None:
    """Train one configuration in both arms, reporting metrics and a checkpoint every epoch."""
    set_threads(settings.cpus_per_trial)
    with _quiet(gpus_wanted=settings.gpus_per_trial > 0):
        configure_tensorflow_gpus(ResourcePlan(settings.cpus_per_trial, settings.gpus_per_trial))
    import keras

    from tune_mnist.model import quiet_retracing

    quiet_retracing()  # a reused worker trains new models one after another, by design
    _no_exit_reports()
    # A reused worker must not keep the previous trial's graphs and models alive.
    keras.backend.clear_session()
    _wait_before_retry(settings.retry_delay_s)
    try:
        with _watchdog(settings.trial_timeout_s) as watchdog:
            _train_pair(config, data, settings, watchdog)
    finally:
        keras.backend.clear_session()


def _wait_before_retry(first_delay_s: float) -> None:
    """Wait before a retry (`waits.retry_delay`): what failed the last attempt (a storage outage, a
    node going away) gets time to pass, instead of every retry failing within seconds."""
    from ray import tune

    from tune_mnist.waits import attempt_number, retry_delay

    context = tune.get_context()
    attempt = attempt_number(context.get_trial_dir())
    delay = retry_delay(attempt, first_delay_s)
    if delay:
        print(
            f"tune_mnist: {context.get_trial_name()}: attempt {attempt} starts in {delay:g} s "
            "(--retry-delay)",
            flush=True,
        )
        time.sleep(delay)


def _watchdog(timeout_s: float | None) -> AbstractContextManager[Any]:
    """This trial's `waits.Watchdog` (None without --trial-timeout)."""
    if timeout_s is None:
        return nullcontext()
    from ray import tune

    from tune_mnist.waits import Watchdog

    return Watchdog(timeout_s, tune.get_context().get_trial_name())


def _train_pair(
    config: dict[str, Any], data: SearchData, settings: TrialSettings, watchdog: Any = None
) -> None:
    import ray
    from ray import tune

    checkpoint, seed = tune.get_checkpoint(), settings.seed_of(config)
    if checkpoint:
        pair = _restore(config, data, checkpoint, seed=seed)
    else:
        pair = PairTrainer.build(config, data, seed=seed)
    node_id = ray.get_runtime_context().get_node_id()
    first = pair.state.epoch + 1
    for epoch in range(first, settings.max_epochs + 1):
        _inject_faults(config, pair.models, epoch, first_of_attempt=epoch == first)
        # The process's RSS: the scheduler replaces a reused worker that grew past its limit.
        metrics = {
            **pair.train_epoch(epoch),
            "pair_seed": pair.seed,  # what seeded this pair, for whoever checks its replicates
            "node_id": node_id,
            WORKER_RSS: process_rss_mib(),
        }
        with tempfile.TemporaryDirectory(prefix="tune_mnist_ckpt_") as directory:
            pair.save(Path(directory))
            # tune.report copies the checkpoint to storage before it returns.
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
        if settings.run_location is not None:
            _write_live_tensorboard(
                settings.run_location,
                tune.get_context().get_trial_id(),
                metrics,
                restart=epoch == first,
            )
        if watchdog is not None:
            watchdog.beat()
        if pair.stopped(settings.patience):
            return


def _restore(
    config: dict[str, Any], data: SearchData, checkpoint: tune.Checkpoint, *, seed: int
) -> PairTrainer:
    """The pair from the checkpoint Tune handed it or, when that one cannot be read (a damaged or
    overwritten file), from the newest earlier checkpoint Tune kept that can.

    An earlier checkpoint costs the epochs after it, which are trained again exactly as they were
    (every epoch's random draws depend on the pair's seed and the epoch alone). Raises
    CheckpointUnreadable, naming every file that failed, when none can be read: the attempt fails
    and Tune's retries and the trial's ERROR say so.
    """
    failures = []
    for number, candidate in enumerate(_newest_first(checkpoint)):
        with candidate.as_directory() as directory:
            try:
                pair = PairTrainer.restore(config, data, Path(directory), seed=seed)
            except CheckpointUnreadable as e:
                # Named where it is stored, not in the local copy a remote checkpoint is read from.
                failures.append(str(e).replace(str(directory), candidate.path))
                continue
        if number:
            print(
                f"tune_mnist: {failures[0]}; resumed from the earlier {candidate.path} "
                f"(epoch {pair.state.epoch})",
                file=sys.stderr,
                flush=True,
            )
        return pair
    raise CheckpointUnreadable("no readable checkpoint: " + "; ".join(failures))


def _newest_first(checkpoint: tune.Checkpoint) -> Iterator[tune.Checkpoint]:
    """`checkpoint`, then (looked for only if asked) the earlier ones Tune kept, newest first."""
    yield checkpoint
    yield from earlier_checkpoints(checkpoint)


def _write_live_tensorboard(
    run_location: str, pair_id: str, report: dict[str, Any], *, restart: bool
) -> None:
    """This epoch's scalars for a TensorBoard watching the run; a view, so a failure to write
    them is logged (once per worker) and the pair trains on."""
    from tune_mnist.tensorboard_events import write_live_epoch

    try:
        write_live_epoch(run_location, pair_id, report, restart=restart)
    except (OSError, ImportError) as e:
        if not _live_tensorboard_failed:
            _live_tensorboard_failed.append(e)
            logging.getLogger(__name__).warning(
                "tune_mnist: live TensorBoard scalars not written (%s); the search goes on", e
            )


_live_tensorboard_failed: list[Exception] = []


class PairTrainer:
    """Both arms of one configuration, trained an epoch at a time; no Ray needed (tests use it).

    `seed` is the pair's seed (`TrialSettings.seed_of`): the initial weights, the label noise, and
    every epoch's batch order, MixUp draws and dropout masks derive from it.
    """

    def __init__(
        self,
        config: dict[str, Any],
        data: SearchData,
        models: dict[str, Any],
        state: PairState,
        predictions: dict[str, np.ndarray],
        compared: dict[str, Any] | None = None,
        *,
        seed: int,
    ) -> None:
        from tune_mnist.pipeline import TrainingSet, with_label_noise

        self.config, self.data, self.models, self.seed = config, data, models, seed
        self.state, self.predictions = state, predictions
        # Both arms' models at the compared epoch, once an arm diverged (PairState.compared_epoch).
        self.compared = compared or {}
        # Each active arm's weights after the last epoch trained: if an arm diverges in the next
        # one, they are the compared epoch's models, which Tune's two kept checkpoints soon lose.
        self.previous = self._weights()
        y_train = with_label_noise(data.y_train, config["label_noise"], seed=seed)
        self.training = TrainingSet.from_arrays(data.x_train, y_train)
        self.validation = ValidationSets.of(data)

    @classmethod
    def build(cls, config: dict[str, Any], data: SearchData, *, seed: int) -> PairTrainer:
        """New models with identical initial weights (the fairness the pair relies on)."""
        import keras

        from tune_mnist.model import compile_model

        keras.utils.set_random_seed(seed)
        plain = compile_model(config)
        mixup = compile_model(config)
        mixup.set_weights(plain.get_weights())
        empty = {arm: np.zeros((0, len(data.y_val)), np.int8) for arm in ARMS}
        return cls(config, data, {"plain": plain, "mixup": mixup}, PairState(), empty, seed=seed)

    @classmethod
    def restore(
        cls, config: dict[str, Any], data: SearchData, directory: Path, *, seed: int
    ) -> PairTrainer:
        """The pair as a checkpoint left it: it continues exactly as if never interrupted."""
        models = {arm: load_model(directory, arm) for arm in ARMS}
        compared = {arm: load_model(directory, arm, compared=True) for arm in ARMS}
        predictions = load_predictions(directory)
        predictions.pop("true")
        try:
            state = PairState(**load_state(directory))
        except TypeError as e:  # a state.json of another shape
            raise CheckpointUnreadable(f"{directory}/state.json: unreadable ({e})") from e
        kept = {arm: model for arm, model in compared.items() if model is not None}
        return cls(config, data, models, state, predictions, kept, seed=seed)

    def train_epoch(self, epoch: int) -> dict[str, Any]:
        """Train every active arm one epoch; the report: both arms' metrics and the pair's score."""
        arm_metrics = {
            arm: _train_arm_epoch(
                arm, self.models[arm], self.config, self.seed, self.training, self.validation,
                self.predictions, epoch,
            )
            for arm in self.state.active_arms()
        }  # fmt: skip
        pair_val_acc = _update_state(self.state, arm_metrics, epoch)
        if self.state.compared_epoch is None and len(self.state.active_arms()) < len(ARMS):
            self._keep_compared(epoch - 1)
        self.previous = self._weights()
        return {"epoch": epoch, PAIR_METRIC: pair_val_acc, **arm_metrics}

    def _weights(self) -> dict[str, list[np.ndarray]]:
        return {arm: self.models[arm].get_weights() for arm in self.state.active_arms()}

    def _keep_compared(self, compared_epoch: int) -> None:
        """Freeze both arms' models of the epoch before the first divergence (none at epoch 0)."""
        import keras

        self.state.compared_epoch = compared_epoch
        if compared_epoch < 1:
            return
        for arm in ARMS:
            self.compared[arm] = keras.models.clone_model(self.models[arm])
            self.compared[arm].set_weights(self.previous[arm])

    def save(self, directory: Path) -> None:
        # A diverged arm's weights are NaN: nothing worth restoring, so its model is left out.
        kept = {arm: None if self.state.diverged[arm] else self.models[arm] for arm in ARMS}
        save_checkpoint(
            directory, kept, vars(self.state), self.predictions, self.data.y_val, self.compared
        )

    def stopped(self, patience: int | None) -> bool:
        """Every arm diverged, or `--patience` epochs without a better pair score.

        Patience judges the pair as a whole, so both arms keep the same number of epochs.
        """
        out_of_patience = patience is not None and self.state.epochs_since_best >= patience
        return out_of_patience or not self.state.active_arms()


def _inject_faults(
    config: dict[str, Any], models: dict[str, Any], epoch: int, *, first_of_attempt: bool
) -> None:
    """Apply FAULT_ENV's faults due before `epoch` (those without an epoch: an attempt's first)."""
    faults = injected_faults(config)
    due = {kind for kind, at in faults.items() if at == epoch or (at is None and first_of_attempt)}
    if "error" in due:
        raise InjectedFault(f"{FAULT_ENV} asked this trial to fail")
    while "hang" in due:  # alive and silent, as a process stuck in a call that never returns
        time.sleep(3600)
    if "oom" in due:  # grows until Ray's memory monitor ends the process, as a leak would
        held = []
        for _ in range(OOM_FAULT_LIMIT_MIB // 256):
            held.append(np.ones(256 * 2**20, dtype=np.uint8))  # touched pages: resident
            time.sleep(0.2)
        raise InjectedFault(f"{FAULT_ENV}: {OOM_FAULT_LIMIT_MIB} MiB held and nothing stopped it")
    for arm, fault in (("mixup", "nan"), ("plain", "nan-plain")):
        if fault in due and models[arm] is not None:
            models[arm].set_weights([np.full_like(w, np.nan) for w in models[arm].get_weights()])


def _train_arm_epoch(
    arm: str,
    model: Any,
    config: dict[str, Any],
    seed: int,
    training: Any,
    validation: ValidationSets,
    predictions: dict[str, np.ndarray],
    epoch: int,
) -> dict[str, Any]:
    """One epoch of one arm on the pair's batches of that epoch, then its validation metrics."""
    from tune_mnist.pipeline import reseed_layers

    reseed_layers(model, seed=seed, epoch=epoch)
    batches = training.epoch(
        epoch=epoch,
        seed=seed,
        batch_size=config["batch_size"],
        mixup_alpha=config["mixup_alpha"] if ARMS[arm] else None,
    )
    started = time.perf_counter()
    # shuffle=False changes nothing (the batches come in the epoch's seeded order, and Keras
    # never shuffles a tf.data.Dataset) but stops Keras warning about it in every worker.
    fitted = model.fit(batches, epochs=epoch, initial_epoch=epoch - 1, shuffle=False, verbose=0)
    history = fitted.history
    seconds = time.perf_counter() - started
    train = {"train_loss": float(history["loss"][-1]), "train_acc": float(history["acc"][-1])}
    timing = {"epoch_seconds": seconds, "images_per_second": len(training) / seconds}
    diverged = not math.isfinite(train["train_loss"])
    # A diverged model's predictions mean nothing: its validation metrics are NaN, not chance.
    scores = _nan_scores() if diverged else _validation_scores(arm, model, validation, predictions)
    return {"epoch": epoch, **train, **scores, **timing, "diverged": diverged}


def _validation_scores(
    arm: str, model: Any, validation: ValidationSets, predictions: dict[str, np.ndarray]
) -> dict[str, float]:
    """Clean and mixed validation metrics; appends the predicted classes to `predictions`."""
    # In inference mode each image's output does not depend on the others in its batch: one call
    # gives what two would (up to round-off where a batch straddles the two sets).
    from tune_mnist.model import predict

    both = predict(model, validation.images_then_mixed)
    probs, mixed_probs = both[: len(validation.labels)], both[len(validation.labels) :]
    clean, mixed = score(probs, validation.labels), score(mixed_probs, validation.mixed_labels)
    predicted = probs.argmax(axis=1).astype(np.int8)[None, :]
    predictions[arm] = np.concatenate([predictions[arm], predicted])
    return {
        "val_loss": clean["loss"],
        "val_acc": clean["acc"],
        "val_mixed_loss": mixed["loss"],
        "val_mixed_acc": mixed["acc"],
        "val_ece": clean["ece"],
        "val_mixed_ece": mixed["ece"],
    }


def _nan_scores() -> dict[str, float]:
    names = ("val_loss", "val_acc", "val_mixed_loss", "val_mixed_acc", "val_ece", "val_mixed_ece")
    return dict.fromkeys(names, math.nan)


def _update_state(state: PairState, arm_metrics: dict[str, dict[str, Any]], epoch: int) -> float:
    """Record the epoch and divergences; return the pair's score (a failed arm at chance)."""
    state.epoch = epoch
    for arm, metrics in arm_metrics.items():
        state.diverged[arm] = bool(metrics["diverged"])
    pair_val_acc = float(
        np.mean(
            [
                CHANCE_ACCURACY if state.diverged[arm] else arm_metrics[arm]["val_acc"]
                for arm in ARMS
            ]
        )
    )
    if pair_val_acc > state.best_pair_val_acc:
        state.best_pair_val_acc, state.epochs_since_best = pair_val_acc, 0
    else:
        state.epochs_since_best += 1
    return pair_val_acc
