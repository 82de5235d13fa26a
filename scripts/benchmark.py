"""Performance benchmark of tune_mnist on this machine: one run, ratios measured side by side.

    python scripts/benchmark.py --quick --json out.json     # < 5 minutes
    python scripts/benchmark.py --json full.json            # longer windows, adds the ASHA comparison

Measures the float32 matmul peak, training FLOPs per image, the service's pipeline (plain and
MixUp) against two baselines (plain `model.fit` on NumPy arrays, the original study's NumPy MixUp
loader), concurrency (1 trial on all cores vs 1 trial per core), Tune's overhead and time to the
first epoch, peak memory on full Fashion-MNIST and, in full mode, what ASHA saves on the original
grid. Prints a table and writes every figure, with the machine description, to --json.
Helpers live here, not in tune_mnist/: the service's own functions are what gets measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

ORIGINAL = {"num_dense": 0, "dense_units": 10, "batch_norm": True, "pooling": "none"}
SECTIONS = ("peak", "pipeline", "baselines", "levers", "concurrency", "tune", "memory", "asha")


# ---------------------------------------------------------------- machine and configurations


def machine() -> dict[str, Any]:
    import psutil

    cpu_model, flags = platform.processor(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    from tune_mnist.search import _versions

    return {
        "platform": platform.platform(),
        "cpu": cpu_model,
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "simd": sorted(f for f in flags if f.startswith(("avx", "amx", "fma"))),
        "bfloat16_hardware": bool(flags & {"avx512_bf16", "amx_bf16"}),
        "float16_hardware": bool(flags & {"avx512_fp16", "amx_fp16"}),
        "load_average_at_start": os.getloadavg(),
        "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "(default)"),
        "versions": _versions(),
    }


def config(**overrides: Any) -> dict[str, Any]:
    from tune_mnist.space import KEYS

    return {**{k: key.default for k, key in KEYS.items()}, **ORIGINAL, **overrides}


BENCHMARKED = {
    "num_conv=2": config(num_conv=2),
    "num_conv=3": config(num_conv=3),
    "num_conv=4": config(num_conv=4),
    "num_conv=2 pooled": config(num_conv=2, pooling="max"),
}


def training_flops_per_image(cfg: dict[str, Any]) -> float:
    """2 x multiply-adds of every Conv2D and Dense layer, from the layer shapes; training = 3 x forward.

    Batch norm, activations, pooling and dropout are elementwise and ignored (a few percent).
    """
    from keras import layers

    from tune_mnist.model import build_model

    forward = 0.0
    for layer in build_model(cfg).layers:
        if isinstance(layer, layers.Conv2D):
            _, h, w, c_out = layer.output.shape
            kh, kw, c_in, _ = layer.kernel.shape
            forward += 2.0 * h * w * kh * kw * c_in * c_out
        elif isinstance(layer, layers.Dense):
            n_in, n_out = layer.kernel.shape
            forward += 2.0 * n_in * n_out
    return 3 * forward


def fashion(n: int | None = None, seed: int = 0, val_fraction: float = 0.1):
    from tune_mnist import data

    arrays = data.load_arrays("fashion_mnist", seed=seed)
    return data.split(arrays, "fashion_mnist", val_fraction=val_fraction, train_subset=n, seed=seed)


# ---------------------------------------------------------------- measuring helpers


def matmul_peak(n: int, seconds: float) -> float:
    """GFLOP/s of an n x n float32 matmul, best of a few timed blocks."""
    import tensorflow as tf

    a = tf.random.normal((n, n))
    b = tf.random.normal((n, n)) / n**0.5  # keeps the chained products finite

    @tf.function
    def block(a, b):
        # Chained, so the optimizer cannot merge identical matmuls into one.
        c = a
        for _ in range(4):
            c = tf.matmul(c, b)
        return tf.reduce_sum(c)

    block(a, b).numpy()
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t = time.perf_counter()
        block(a, b).numpy()
        best = max(best, 4 * 2 * n**3 / (time.perf_counter() - t) / 1e9)
    return best


EpochTimer = Callable[[], float]  # trains one epoch, returns its training images/s


def interleaved(timers: dict[str, EpochTimer], rounds: int) -> dict[str, float]:
    """Best images/s of each timer, timed in turns (a, b, a, b ...) so that a change of machine
    load hits all of them alike and their ratios stay meaningful."""
    best = dict.fromkeys(timers, 0.0)
    for _ in range(rounds):
        for name, timer in timers.items():
            best[name] = max(best[name], timer())
    return best


def epoch_images(cfg: dict[str, Any], x, y, seconds: float) -> int:
    """How many images one epoch of `cfg` needs to last about `seconds` (from one short epoch)."""
    bs = cfg["batch_size"]
    small = min(len(x), 4 * bs)
    rate = service_timer(cfg, x[:small], y[:small], mixup=False)()  # service_timer traced already
    return min(len(x), max(small, int(rate * seconds) // bs * bs))


def _timed(fit: Callable[[], Any], images: int) -> EpochTimer:
    def timer() -> float:
        started = time.perf_counter()
        fit()
        return images / (time.perf_counter() - started)

    return timer


def autotuned_dataset(x, y, **kwargs):
    """The service's pipeline with tf.data's autotuner turned back on (as it was before)."""
    import tensorflow as tf

    from tune_mnist.pipeline import training_dataset

    options = tf.data.Options()
    options.autotune.enabled = True
    return training_dataset(x, y, **kwargs).with_options(options)


def service_timer(cfg: dict[str, Any], x, y, *, mixup: bool, compiled=None, dataset=None,
                  epochs: int = 1) -> EpochTimer:
    """The trainable's own path: compile_model + training_dataset + one model.fit per epoch
    (`epochs` such calls back to back per timing, as a trial makes them)."""
    from tune_mnist.model import compile_model
    from tune_mnist.pipeline import training_dataset

    model = compiled or compile_model(cfg)
    train = (dataset or training_dataset)(x, y, batch_size=cfg["batch_size"], seed=0, mixup=mixup, mixup_alpha=cfg["mixup_alpha"])
    model.fit(train.take(2), verbose=0)  # trace outside the timed epochs

    def fit() -> None:
        for _ in range(epochs):
            model.fit(train, epochs=1, verbose=0)

    return _timed(fit, epochs * len(x))


def tutorial_timer(cfg: dict[str, Any], x, y) -> EpochTimer:
    """The tutorials' way: float arrays in memory, `model.fit(x, y, batch_size=50)`."""
    import numpy as np

    from tune_mnist.model import compile_model

    model = compile_model(cfg)
    xf, yo = x.astype(np.float32)[..., None] / 255.0, np.eye(10, dtype=np.float32)[y]
    model.fit(xf[:100], yo[:100], batch_size=50, verbose=0)
    return _timed(lambda: model.fit(xf, yo, batch_size=50, epochs=1, shuffle=True, verbose=0), len(x))


def original_loader_timer(cfg: dict[str, Any], x, y) -> EpochTimer:
    from tune_mnist.model import compile_model

    model = compile_model(cfg)
    bs = cfg["batch_size"]
    loader = original_mixup_loader(x, y, batch_size=bs, alpha=cfg["mixup_alpha"])
    model.fit(loader, epochs=1, steps_per_epoch=2, verbose=0)
    return _timed(lambda: model.fit(loader, epochs=1, verbose=0), len(loader) * bs)


def input_only(cfg: dict[str, Any], x, y) -> dict[str, float]:
    """Images/s of the MixUp input paths alone, no model: one epoch of batches, best of 3."""
    from tune_mnist.pipeline import training_dataset

    service = training_dataset(x, y, batch_size=cfg["batch_size"], seed=0, mixup=True, mixup_alpha=cfg["mixup_alpha"])
    loader = original_mixup_loader(x, y, batch_size=cfg["batch_size"], alpha=cfg["mixup_alpha"])

    def drain_service() -> None:
        for _ in service:
            pass

    def drain_loader() -> None:
        for index in range(len(loader)):
            loader[index]

    found = {"service_mixup": max(_timed(drain_service, len(x))() for _ in range(3)),
             "original_mixup_loader": max(_timed(drain_loader, len(loader) * cfg["batch_size"])() for _ in range(3))}
    found["service_vs_original_loader"] = found["service_mixup"] / found["original_mixup_loader"]
    return found


def original_mixup_loader(x, y, *, batch_size: int, alpha: float, seed: int = 0):
    """The original study's loader: two shuffled tf.data iterators per batch, mixed in NumPy with
    per-sample Beta weights, served through a keras.utils.PyDataset."""
    import keras
    import numpy as np
    import tensorflow as tf

    class MixUpLoader(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__()
            self.x = x.astype(np.float32)[..., None] / 255.0
            self.y = np.eye(10, dtype=np.float32)[y]
            self.rng = np.random.default_rng(seed)
            self.first = iter(self._shuffled(seed))
            self.second = iter(self._shuffled(seed + 1))

        def _shuffled(self, s: int):
            return (tf.data.Dataset.from_tensor_slices((self.x, self.y))
                    .shuffle(len(self.x), seed=s).batch(batch_size, drop_remainder=True).repeat())

        def __len__(self) -> int:
            return len(self.x) // batch_size

        def __getitem__(self, index: int):
            x1, y1 = (t.numpy() for t in next(self.first))
            x2, y2 = (t.numpy() for t in next(self.second))
            weight = self.rng.beta(alpha, alpha, size=batch_size).astype(np.float32)
            return (weight[:, None, None, None] * x1 + (1 - weight[:, None, None, None]) * x2,
                    weight[:, None] * y1 + (1 - weight[:, None]) * y2)

    return MixUpLoader()


class PeakRSS:
    """Samples the RSS of a process tree; keeps each process's peak and its command line."""

    def __init__(self, root_pid: int, interval: float = 0.2) -> None:
        import psutil

        self.root, self.interval, self.peaks = psutil.Process(root_pid), interval, {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                return
            for proc in procs:
                try:
                    rss = proc.memory_info().rss
                    name = " ".join(proc.cmdline())[:120] or proc.name()
                except psutil.Error:
                    continue
                old = self.peaks.get(proc.pid, (0, name))
                self.peaks[proc.pid] = (max(old[0], rss), name if name.startswith("ray::") else old[1] or name)
            self._stop.wait(self.interval)

    def stop(self) -> dict[int, tuple[int, str]]:
        self._stop.set()
        self._thread.join()
        return self.peaks


# ---------------------------------------------------------------- subprocess workers


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Runs in a fresh process (thread counts must be set before TensorFlow's first op)."""
    from tune_mnist.trainable import set_threads

    if spec.get("threads"):
        set_threads(spec["threads"])
    if spec["kind"] == "throughput":
        search = fashion(spec["images"])
        cfg = config(**spec["config"])
        from tune_mnist.model import compile_model
        from tune_mnist.pipeline import training_dataset

        model = compile_model(cfg)
        train = training_dataset(search.x_train, search.y_train, batch_size=cfg["batch_size"], seed=0, mixup=spec["mixup"])
        model.fit(train.take(3), verbose=0)
        barrier = spec.get("barrier")
        if barrier:  # start together so the timed windows overlap
            Path(barrier, f"ready-{os.getpid()}").touch()
            while len(list(Path(barrier).glob("ready-*"))) < spec["peers"]:
                time.sleep(0.05)
        images, started = 0, time.perf_counter()
        while time.perf_counter() - started < spec["seconds"]:
            model.fit(train, epochs=1, verbose=0)
            images += len(search.x_train)
        return {"images_per_second": images / (time.perf_counter() - started)}
    if spec["kind"] == "back_to_back":
        return back_to_back(spec)
    raise ValueError(spec["kind"])


def back_to_back(spec: dict[str, Any]) -> dict[str, Any]:
    """The trials of a space trained one after another in this process, as the trainable does
    (fit one epoch, evaluate clean and mixed validation), without Tune."""
    import keras
    import numpy as np

    from tune_mnist import data as datasets
    from tune_mnist.model import compile_model
    from tune_mnist.pipeline import training_dataset
    from tune_mnist.space import load_space
    from tune_mnist.trainable import evaluate

    search = fashion(spec["train_subset"], val_fraction=spec["val_fraction"])
    val_images = search.x_val.astype(np.float32)[..., None] / 255.0
    val_labels = np.eye(10, dtype=np.float32)[search.y_val]
    mixed_images, mixed_labels = datasets.apply_mix(search.x_val, search.y_val, search.val_mix)
    for cfg in load_space(spec["space"]).grid_configs():
        keras.utils.set_random_seed(cfg["seed"])
        model = compile_model(cfg)
        train = training_dataset(search.x_train, search.y_train, batch_size=cfg["batch_size"], seed=cfg["seed"],
                                 mixup=cfg["mixup"], mixup_alpha=cfg["mixup_alpha"])
        for epoch in range(1, spec["max_epochs"] + 1):
            model.fit(train, epochs=epoch, initial_epoch=epoch - 1, verbose=0)
            evaluate(model, val_images, val_labels)
            evaluate(model, mixed_images[..., None], mixed_labels)
    return {}


def spawn(spec: dict[str, Any], env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, __file__, "--worker", json.dumps(spec)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, **(env or {})},
    )


def collect(proc: subprocess.Popen) -> dict[str, Any]:
    out, _ = proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"worker failed with status {proc.returncode}")
    return json.loads(out.strip().splitlines()[-1])


def service_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


def run_service(args: list[str], storage: Path, name: str, *, watch_memory: bool = False) -> dict[str, Any]:
    """`python -m tune_mnist.run ...` timed from command start; first epoch from Tune's result.json."""
    started = time.time()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tune_mnist.run", *args, "--storage-path", str(storage), "--name", name],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=service_env(), cwd=REPO,
    )
    monitor = PeakRSS(proc.pid) if watch_memory else None
    output, _ = proc.communicate()
    wall = time.time() - started
    if proc.returncode:
        raise RuntimeError(f"tune_mnist.run failed ({proc.returncode}):\n{output[-3000:]}")
    firsts = []
    for result in (storage / name).glob("*/result.json"):
        lines = result.read_text().splitlines()
        if lines:
            firsts.append(json.loads(lines[0])["timestamp"])
    found: dict[str, Any] = {"wall_seconds": wall,
                             "seconds": json.loads((storage / name / "run_manifest.json").read_text())["seconds"],
                             "first_epoch_seconds": (min(firsts) - started) if firsts else None}
    if monitor:
        peaks = monitor.stop()
        trials = [rss for rss, name in peaks.values() if "train_trial" in name or "ImplicitFunc" in name]
        found["driver_peak_rss_mib"] = peaks.get(proc.pid, (0, ""))[0] / 2**20
        found["trial_peak_rss_mib"] = max(trials) / 2**20 if trials else None
        found["all_processes_peak_rss_mib"] = sum(rss for rss, _ in peaks.values()) / 2**20
    return found


def write_space(directory: Path, name: str, keys: dict[str, Any]) -> Path:
    import yaml

    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(keys))
    return path


# ---------------------------------------------------------------- the sections


def run_sections(quick: bool, sections: list[str], scratch: Path,
                 save: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Every measurement; `save` gets the figures so far after each section (a partial run keeps them)."""
    cores = os.cpu_count() or 1
    measure_s = 2.5 if quick else 10.0
    rounds = 2 if quick else 3
    subset = 3000 if quick else 20000
    out: dict[str, Any] = {"mode": "quick" if quick else "full", "machine": machine()}
    search = fashion(subset) if {"pipeline", "baselines", "levers"} & set(sections) else None
    log = lambda *a: print("  ..", *a, file=sys.stderr, flush=True)  # noqa: E731

    save(out)
    if "peak" in sections:
        log("matmul peak")
        out["peak"] = {"matmul_n": 2048 if quick else 4096,
                       "gflops_all_cores": matmul_peak(2048 if quick else 4096, 3.0 if quick else 10.0)}
    out["flops"] = {name: training_flops_per_image(cfg) for name, cfg in BENCHMARKED.items()}
    peak = out.get("peak", {}).get("gflops_all_cores")

    save(out)
    if {"pipeline", "baselines"} & set(sections):
        # Every configuration's arms (and, for num_conv=2, both baselines) are timed in turns, so
        # their ratios come from the same moments of machine load.
        rows, baselines = {}, None
        x, y = search.x_train, search.y_train
        names = list(BENCHMARKED) if "pipeline" in sections else ["num_conv=2"]
        for name in names:
            cfg = BENCHMARKED[name]
            n = epoch_images(cfg, x, y, measure_s)
            log(f"pipeline {name}: {n} images per timed epoch")
            timers = {"plain": service_timer(cfg, x[:n], y[:n], mixup=False),
                      "mixup": service_timer(cfg, x[:n], y[:n], mixup=True)}
            if name == "num_conv=2" and "baselines" in sections:
                timers["tutorial"] = tutorial_timer(cfg, x[:n], y[:n])
                timers["loader"] = original_loader_timer(cfg, x[:n], y[:n])
            best = interleaved(timers, rounds)
            row = {"plain": best["plain"], "mixup": best["mixup"], "mixup_cost": 1 - best["mixup"] / best["plain"]}
            if peak:
                row["percent_of_peak"] = 100 * row["plain"] * out["flops"][name] / 1e9 / peak
            rows[name] = row
            if "tutorial" in best:
                baselines = {
                    "config": "num_conv=2", "tutorial_numpy_fit": best["tutorial"],
                    "original_mixup_loader": best["loader"], "service_plain": best["plain"],
                    "service_mixup": best["mixup"], "plain_vs_tutorial": best["plain"] / best["tutorial"],
                    "mixup_vs_original_loader": best["mixup"] / best["loader"],
                    "input_only": input_only(cfg, x, y),
                }
        if "pipeline" in sections:
            out["pipeline"] = {"batch_size": 50, "threads": "all cores", "rounds": rounds, "images_per_second": rows}
        if baselines:
            out["baselines"] = baselines

    save(out)
    if "levers" in sections:
        import keras

        from tune_mnist.model import build_model

        cfg = BENCHMARKED["num_conv=2"]
        x, y = search.x_train, search.y_train
        n = epoch_images(cfg, x, y, measure_s)
        timers = {}
        for batch in (50, 256) if quick else (50, 128, 256):
            for spe in (1, 8):
                log(f"lever batch {batch} steps_per_execution {spe}")
                model = build_model(cfg)
                model.compile(optimizer=keras.optimizers.Adam(cfg["learning_rate"]),
                              loss=keras.losses.CategoricalCrossentropy(),
                              metrics=[keras.metrics.CategoricalAccuracy(name="acc")], steps_per_execution=spe)
                timers[f"batch={batch} steps_per_execution={spe}"] = service_timer(
                    {**cfg, "batch_size": batch}, x[:n], y[:n], mixup=False, compiled=model)
        # The autotuner's stall hits the end of an epoch once its optimization period has grown
        # (seconds into a search): time 4 consecutive short epochs, as a trial runs them.
        log("lever tf.data autotuner off (the service) vs on (before), 4 consecutive epochs")
        quarter = max(cfg["batch_size"], n // 4)
        timers["tf.data autotune off: 4 consecutive epochs"] = service_timer(
            cfg, x[:quarter], y[:quarter], mixup=False, epochs=4)
        timers["tf.data autotune on: 4 consecutive epochs"] = service_timer(
            cfg, x[:quarter], y[:quarter], mixup=False, dataset=autotuned_dataset, epochs=4)
        if machine()["bfloat16_hardware"]:
            log("lever mixed_bfloat16")
            keras.mixed_precision.set_global_policy("mixed_bfloat16")
            timers["mixed_bfloat16 policy"] = service_timer(cfg, x[:n], y[:n], mixup=False)
            keras.mixed_precision.set_global_policy("float32")
        levers = interleaved(timers, rounds)
        if not quick:  # each needs a fresh process (TensorFlow reads the variable at import)
            for onednn in ("0", "1"):
                log(f"lever TF_ENABLE_ONEDNN_OPTS={onednn}")
                spec = {"kind": "throughput", "config": {"num_conv": 2}, "images": 3000, "mixup": False,
                        "seconds": measure_s}
                levers[f"TF_ENABLE_ONEDNN_OPTS={onednn} (fresh process)"] = collect(
                    spawn(spec, {"TF_ENABLE_ONEDNN_OPTS": onednn}))["images_per_second"]
        out["levers"] = {"config": "num_conv=2 plain", "images_per_second": levers}

    save(out)
    if "concurrency" in sections:
        spec = {"kind": "throughput", "config": {"num_conv": 2}, "images": 300 if quick else 3000,
                "mixup": False, "seconds": measure_s * 1.5}
        log("concurrency: 1 trial x all cores")
        all_cores = collect(spawn({**spec, "threads": cores}))["images_per_second"]
        log("concurrency: 1 trial x 1 core, alone")
        one_core = collect(spawn({**spec, "threads": 1}))["images_per_second"]
        log(f"concurrency: {cores} trials x 1 core")
        barrier = tempfile.mkdtemp(dir=scratch)
        procs = [spawn({**spec, "threads": 1, "barrier": barrier, "peers": cores}) for _ in range(cores)]
        per_core = sum(collect(p)["images_per_second"] for p in procs)
        out["concurrency"] = {
            "config": "num_conv=2 plain", "cores": cores,
            "one_trial_all_cores": all_cores, "one_trial_one_core_alone": one_core,
            "one_trial_per_core_aggregate": per_core,
            "aggregate_vs_n_x_one_core": per_core / (cores * one_core),
            "aggregate_vs_one_trial_all_cores": per_core / all_cores,
            "default_placement": "--cpus-per-trial 1: one trial per core, TensorFlow threads = 1",
        }

    save(out)
    if "tune" in sections:
        space = write_space(scratch, "overhead", {**config(num_conv=2), "num_conv": {"grid": [1, 2]},
                                                  "mixup": {"grid": [False, True]}, "seed": 0})
        # Quick: small validation split, so validation does not dwarf the 1,000-image epochs.
        n, epochs, val_fraction = (1000, 1, 0.02) if quick else (10000, 2, 0.1)
        common = ["--space", str(space), "--dataset", "fashion_mnist", "--train-subset", str(n),
                  "--max-epochs", str(epochs), "--val-fraction", str(val_fraction)]
        log("tune: same trials back to back in one process")
        started = time.time()
        collect(spawn({"kind": "back_to_back", "space": str(space), "train_subset": n, "max_epochs": epochs,
                       "val_fraction": val_fraction, "threads": cores}))
        b2b = time.time() - started
        log("tune: the service, one trial at a time on all cores")
        sequential = [*common, "--cpus-per-trial", str(cores), "--max-concurrent", "1"]
        service = run_service(sequential, scratch / "runs", "overhead")
        log("tune: the service with --reuse-workers")
        reused = run_service([*sequential, "--reuse-workers"], scratch / "runs", "overhead-reused")
        default = {} if quick else run_service(common, scratch / "runs", "default")
        trials = 4
        # The service also scores the two best models on the test set after the search, which the
        # back-to-back loop does not: its time (from the run's manifest) is reported, not counted.
        test_eval = service["seconds"]["test_evaluation"]
        tuned = service["wall_seconds"] - test_eval
        tuned_reused = reused["wall_seconds"] - reused["seconds"]["test_evaluation"]

        def fraction_if_trials_took_30s(overhead: float) -> float:
            return overhead / (overhead + trials * 30)

        out["tune"] = {
            "trials": trials, "train_images": n, "epochs": epochs, "val_fraction": val_fraction,
            "back_to_back_one_process_seconds": b2b,
            "service_sequential_seconds": service["wall_seconds"],
            "service_seconds_by_phase": service["seconds"],
            "test_evaluation_seconds": test_eval,
            "overhead_seconds": tuned - b2b,
            "overhead_fraction": 1 - b2b / tuned,
            "overhead_fraction_if_trials_took_30s": fraction_if_trials_took_30s(tuned - b2b),
            "first_epoch_seconds": service["first_epoch_seconds"],
            "reuse_workers": {
                "service_sequential_seconds": reused["wall_seconds"],
                "overhead_seconds": tuned_reused - b2b,
                "overhead_fraction_if_trials_took_30s": fraction_if_trials_took_30s(tuned_reused - b2b),
            },
            "service_default_placement_seconds": default.get("wall_seconds"),
        }

    save(out)
    if "memory" in sections:
        space = write_space(scratch, "memory", {**config(num_conv=0), "mixup": {"grid": [False, True]},
                                                "batch_size": 500, "seed": 0})
        log("memory: full Fashion-MNIST through the service")
        found = run_service(["--space", str(space), "--dataset", "fashion_mnist", "--max-epochs", "1"],
                            scratch / "runs", "memory", watch_memory=True)
        out["memory"] = {"dataset": "fashion_mnist full (54,000 train / 6,000 validation)",
                         "model": "num_conv=0 num_dense=0 (the data and runtime dominate memory)",
                         **found}

    save(out)
    if "asha" in sections and not quick:
        from tune_mnist import results

        base = ["--space", str(REPO / "search_spaces" / "seed_grid.yaml"), "--dataset", "fashion_mnist",
                "--train-subset", "2000", "--val-fraction", "0.02", "--max-epochs", "6", "--grace-period", "1",
                "--reduction-factor", "3"]
        found = {}
        for scheduler in ("grid", "asha"):
            log(f"asha: original grid with --scheduler {scheduler}")
            timing = run_service([*base, "--scheduler", scheduler], scratch / "runs", f"seed-{scheduler}")
            trials = results.load(scratch / "runs" / f"seed-{scheduler}").trials
            found[scheduler] = {"trial_epochs": int(trials["epochs_run"].sum()),
                                "best_val_acc": float(trials["best_val_acc"].max()), **timing}
        out["asha"] = {"space": "seed_grid.yaml, 2,000 Fashion-MNIST training / 1,200 validation images, 6 epochs, grace 1, rf 3", **found,
                       "trial_epoch_fraction": found["asha"]["trial_epochs"] / found["grid"]["trial_epochs"],
                       "best_val_acc_gap": found["grid"]["best_val_acc"] - found["asha"]["best_val_acc"]}
    out["machine"]["load_average_at_end"] = os.getloadavg()
    return out


def targets(r: dict[str, Any]) -> dict[str, Any]:
    """Issue 5's targets, each True/False (None when its section did not run)."""
    def get(*keys):
        node = r
        for k in keys:
            if not isinstance(node, dict) or k not in node:
                return None
            node = node[k]
        return node

    pct = get("pipeline", "images_per_second", "num_conv=2", "percent_of_peak")
    costs = [row["mixup_cost"] for row in (get("pipeline", "images_per_second") or {}).values()]
    checks = {
        "num_conv=2 >= 50% of matmul peak": None if pct is None else pct >= 50,
        "plain >= 2x tutorials' baseline": None if get("baselines") is None else get("baselines", "plain_vs_tutorial") >= 2,
        "MixUp >= 4x original loader": None if get("baselines") is None else get("baselines", "mixup_vs_original_loader") >= 4,
        "MixUp costs <= 5% (every config)": None if not costs else max(costs) <= 0.05,
        "aggregate >= 0.9 x N x one 1-core trial": None if get("concurrency") is None
        else get("concurrency", "aggregate_vs_n_x_one_core") >= 0.9,
        "Tune overhead <= 10% for 30 s trials (default: fresh workers)": None if get("tune") is None
        else get("tune", "overhead_fraction_if_trials_took_30s") <= 0.10,
        "Tune overhead <= 10% for 30 s trials (--reuse-workers)": None if get("tune") is None
        else get("tune", "reuse_workers", "overhead_fraction_if_trials_took_30s") <= 0.10,
        "first epoch within 15 s": None if get("tune", "first_epoch_seconds") is None
        else min(get("tune", "first_epoch_seconds"), get("memory", "first_epoch_seconds") or 1e9) <= 15,
        "trial peak RSS < 1.5 GiB": None if get("memory", "trial_peak_rss_mib") is None
        else get("memory", "trial_peak_rss_mib") < 1536,
    }
    return checks


def table(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [f"tune_mnist benchmark ({r['mode']}): {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, "
             f"load {m['load_average_at_start'][0]:.1f} at start / {m.get('load_average_at_end', [float('nan')])[0]:.1f} at end",
             f"TensorFlow {m['versions'].get('tensorflow')}, Keras {m['versions'].get('keras')}, "
             f"Ray {m['versions'].get('ray')}; SIMD {' '.join(m['simd'])}; bf16 hardware: {m['bfloat16_hardware']}", ""]
    if "peak" in r:
        lines.append(f"float32 matmul peak ({r['peak']['matmul_n']}^2, all cores): {r['peak']['gflops_all_cores']:.1f} GFLOP/s")
    lines.append("training MFLOP/image: " + ", ".join(f"{k} {v / 1e6:.0f}" for k, v in r["flops"].items()))
    if "pipeline" in r:
        lines += ["", f"{'service pipeline, batch 50':28} {'plain img/s':>12} {'mixup img/s':>12} {'mixup cost':>11} {'% peak':>7}"]
        for name, row in r["pipeline"]["images_per_second"].items():
            lines.append(f"{name:28} {row['plain']:12.0f} {row['mixup']:12.0f} {100 * row['mixup_cost']:10.1f}% "
                         f"{row.get('percent_of_peak', float('nan')):6.1f}%")
    if "baselines" in r:
        b = r["baselines"]
        lines += ["", "num_conv=2, same run (img/s):",
                  f"  tutorials' model.fit on NumPy, batch 50 {b['tutorial_numpy_fit']:8.0f}",
                  f"  original MixUp loader (PyDataset)       {b['original_mixup_loader']:8.0f}",
                  f"  service plain                           {b['service_plain']:8.0f}  ({b['plain_vs_tutorial']:.2f}x tutorials)",
                  f"  service MixUp                           {b['service_mixup']:8.0f}  ({b['mixup_vs_original_loader']:.2f}x original loader)",
                  f"  input path alone, no model: service MixUp {b['input_only']['service_mixup']:.0f}, original loader "
                  f"{b['input_only']['original_mixup_loader']:.0f} ({b['input_only']['service_vs_original_loader']:.1f}x)"]
    if "levers" in r:
        lines += ["", "levers, num_conv=2 plain (img/s):"]
        lines += [f"  {k:48} {v:8.0f}" for k, v in r["levers"]["images_per_second"].items()]
    if "concurrency" in r:
        c = r["concurrency"]
        lines += ["", f"concurrency, num_conv=2 (img/s): 1 trial x {c['cores']} threads {c['one_trial_all_cores']:.0f}; "
                  f"1 trial x 1 thread alone {c['one_trial_one_core_alone']:.0f}; {c['cores']} trials x 1 thread "
                  f"{c['one_trial_per_core_aggregate']:.0f} ({c['aggregate_vs_n_x_one_core']:.2f} x N x 1-core, "
                  f"{c['aggregate_vs_one_trial_all_cores']:.2f} x 1 trial on all cores)"]
    if "tune" in r:
        t = r["tune"]
        lines += ["", f"Tune overhead ({t['trials']} trials, {t['train_images']} images, {t['epochs']} epochs): "
                  f"back to back {t['back_to_back_one_process_seconds']:.1f} s, service {t['service_sequential_seconds']:.1f} s "
                  f"of which {t['test_evaluation_seconds']:.1f} s test-set evaluation -> overhead "
                  f"{100 * t['overhead_fraction']:.0f}% ({t['overhead_seconds']:.1f} s; "
                  f"{100 * t['overhead_fraction_if_trials_took_30s']:.1f}% if trials took 30 s)",
                  f"with --reuse-workers: service {t['reuse_workers']['service_sequential_seconds']:.1f} s -> overhead "
                  f"{t['reuse_workers']['overhead_seconds']:.1f} s; "
                  f"{100 * t['reuse_workers']['overhead_fraction_if_trials_took_30s']:.1f}% if trials took 30 s",
                  f"first epoch reported {t['first_epoch_seconds']:.0f} s after the command"]
    if "memory" in r:
        mem = r["memory"]
        trial = mem["trial_peak_rss_mib"]
        lines += ["", f"peak RSS on full Fashion-MNIST: trial {trial:.0f} MiB, driver {mem['driver_peak_rss_mib']:.0f} MiB; "
                  f"first epoch {mem['first_epoch_seconds']:.0f} s after the command (default placement)"
                  if trial is not None else "peak RSS: trial process not found"]
    if "asha" in r:
        a = r["asha"]
        lines += ["", f"ASHA on the original grid: {100 * a['trial_epoch_fraction']:.0f}% of the grid's trial-epochs, "
                  f"best val_acc {a['asha']['best_val_acc']:.4f} vs grid {a['grid']['best_val_acc']:.4f}"]
    lines += ["", "targets:"] + [f"  {'held' if ok else ('n/a ' if ok is None else 'MISSED')}  {name}"
                                 for name, ok in r["targets"].items()]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short measurements on subsets (< 5 minutes)")
    parser.add_argument("--json", help="write every figure and the machine description here")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))), flush=True)
        return 0
    sections = [s for s in args.sections.split(",") if s]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="tune_mnist_bench_") as scratch:
        result = run_sections(args.quick, sections, Path(scratch), save=lambda partial: args.json and Path(
            args.json).write_text(json.dumps(partial, indent=2)))
    result["benchmark_seconds"] = time.time() - started
    result["targets"] = targets(result)
    print(table(result))
    print(f"\n({result['benchmark_seconds']:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
