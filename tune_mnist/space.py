"""Search spaces: YAML files of model/training keys, validated before Ray starts.

A space is a built-in name (`quickstart`, `seed_grid`, `asha_wide`, `keras_io_mixup`: package data
of `tune_mnist.spaces`) or the path of a YAML file.

Each key is either a constant or one of `grid: [...]`, `choice: [...]`, `uniform: [lo, hi]`,
`loguniform: [lo, hi]`, `randint: [lo, hi]` (both ends included). There is no `mixup` key: every
configuration is one Tune trial that trains a pair, the plain arm and the MixUp arm, the paired
design the comparison needs.

Replicates. Every pair is an independent replicate: its seed (initial weights, batch order, MixUp
draws, dropout masks) is a hash of the run's `--seed`, its whole configuration and its replicate
number, the `seed` key (`tune_mnist.replicates.pair_seed`), so pairs share nothing but the data.
- `seeds: N` in the file, or `--seeds N` (which overrides it), runs every configuration as N
  replicates, numbered 0..N-1. Without either, the `seed` key (default 0) is the one replicate.
- `--num-samples K` on a space without random keys adds replicates, never copies: it is
  `--seeds` times K (replicate numbers 0..N*K-1, each run once; see `Space.replicated`).
- `--num-samples K` on a space with random keys draws K configurations, each run at every grid
  value and replicate number. Each draw also gets a `sample` number (not shown in labels), so two
  draws whose keys happen to be equal are still two different replicates.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from tune_mnist.replicates import SAMPLE_KEY


class SpaceError(Exception):
    """A search space is invalid; the message names the file, the key and the problem."""


@dataclass(frozen=True)
class Key:
    default: Any
    kind: type
    check: Callable[[Any], bool]
    rule: str


def _between(lo: float, hi: float) -> Callable[[Any], bool]:
    return lambda v: lo <= v <= hi


BLOCK_ORDERS = ("bn_relu", "relu_bn")
DROPOUT_AT = ("blocks", "flatten", "features")
PADDINGS = ("same", "valid")
# Where batch norms go when `batch_norm` is true; a file that sets `batch_norm: false` may not ask
# for one (with `batch_norm` a grid or choice, they are simply absent where it is false).
BATCH_NORM_PLACES = ("dense_batch_norm", "final_batch_norm")

KEYS: dict[str, Key] = {
    "num_conv": Key(2, int, _between(0, 6), "an integer from 0 to 6"),
    "filters": Key(24, int, _between(1, 1024), "an integer from 1 to 1024"),
    "filters_step": Key(12, int, _between(0, 1024), "an integer from 0 to 1024"),
    "kernel_size": Key(5, int, _between(1, 28), "an integer from 1 to 28"),
    "pooling": Key("none", str, lambda v: v in ("none", "max"), "'none' or 'max'"),
    # 'valid' shrinks each conv's output by kernel_size - 1 (keras.io's MixUp example).
    "padding": Key("same", str, lambda v: v in PADDINGS, "'same' or 'valid'"),
    # Average each feature map to one number instead of flattening the maps.
    "global_pooling": Key(False, bool, lambda v: True, "true or false"),
    "batch_norm": Key(True, bool, lambda v: True, "true or false"),
    # The block style (tune_mnist/model.py): the defaults build the project's blocks; relu_bn,
    # flatten, false, true the original notebook's. `batch_norm: false` removes every batch norm.
    "block_order": Key("bn_relu", str, lambda v: v in BLOCK_ORDERS, "'bn_relu' or 'relu_bn'"),
    "dense_batch_norm": Key(True, bool, lambda v: True, "true or false"),
    "final_batch_norm": Key(False, bool, lambda v: True, "true or false"),
    "num_dense": Key(0, int, _between(0, 4), "an integer from 0 to 4"),
    "dense_units": Key(128, int, _between(1, 8192), "an integer from 1 to 8192"),
    "dropout": Key(0.4, float, lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "dropout_at": Key(
        "blocks", str, lambda v: v in DROPOUT_AT, "'blocks', 'flatten' or 'features'"
    ),
    "l2": Key(0.0, float, lambda v: v >= 0, "a number >= 0"),
    "optimizer": Key("adam", str, lambda v: v in ("adam", "sgd"), "'adam' or 'sgd'"),
    "learning_rate": Key(1e-3, float, lambda v: 0 < v <= 10, "a number in (0, 10]"),
    "batch_size": Key(50, int, _between(1, 65536), "an integer from 1 to 65536"),
    "augment": Key(False, bool, lambda v: True, "true or false"),
    "label_noise": Key(0.0, float, lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "input_noise": Key(0.0, float, lambda v: v >= 0, "a number >= 0"),
    "mixup_alpha": Key(0.2, float, lambda v: v > 0, "a number > 0"),
    # Keras' set_random_seed hands it to NumPy's legacy seeding and TensorFlow: 32-bit seeds.
    "seed": Key(0, int, _between(0, 2**31 - 1), "an integer from 0 to 2147483647"),
}
DISTRIBUTIONS = ("grid", "choice", "uniform", "loguniform", "randint")
MAX_SEEDS = 1000
BUILTIN_PACKAGE = "tune_mnist.spaces"
DEFAULT_SPACE = "quickstart"


@dataclass(frozen=True)
class Space:
    """A validated search space: constants, grids and random distributions per key."""

    source: str
    constants: dict[str, Any]
    grids: dict[str, list[Any]]
    randoms: dict[str, tuple[str, list[Any]]]

    @property
    def grid_size(self) -> int:
        return math.prod(len(v) for v in self.grids.values())

    def num_trials(self, num_samples: int) -> int:
        return self.grid_size * num_samples

    def replicated(self, num_samples: int) -> Space:
        """The space that `--num-samples num_samples` searches once: for a space without random
        keys, `num_samples` times as many replicate numbers (the `seed` values), continuing above
        the highest, so that each sample is a new replicate rather than a copy of a pair. A space
        with random keys is returned as it is (each sample draws a configuration).

        >>> parse_space({"num_conv": {"grid": [1, 2]}, "seeds": 2}).replicated(3).grids["seed"]
        [0, 1, 2, 3, 4, 5]
        >>> parse_space({"seed": 7}).replicated(2).grids
        {'seed': [7, 8]}
        """
        if self.randoms or num_samples == 1:
            return self
        numbers = self.grids["seed"] if "seed" in self.grids else [self.constants["seed"]]
        above = itertools.count(max(numbers) + 1)
        added = [next(above) for _ in range(len(numbers) * (num_samples - 1))]
        constants = {k: v for k, v in self.constants.items() if k != "seed"}
        grids = {**self.grids, "seed": [*numbers, *added]}
        return Space(self.source, constants, grids, self.randoms)

    @property
    def replicates(self) -> int:
        """Replicate numbers per configuration (the `seed` grid's length; 1 without one)."""
        return len(self.grids.get("seed", [0]))

    def to_dict(self) -> dict[str, Any]:
        """The resolved space as plain data, for the run manifest."""
        resolved: dict[str, Any] = dict(self.constants)
        resolved.update({k: {"grid": v} for k, v in self.grids.items()})
        resolved.update({k: {dist: args} for k, (dist, args) in self.randoms.items()})
        return resolved

    def param_space(self) -> dict[str, Any]:
        """Ray Tune's param_space: every key present, grids and distributions as Tune objects.

        An integer key drawn from a range stays an integer (Tune's uniform draws floats).
        """
        from ray import tune

        space: dict[str, Any] = dict(self.constants)
        space.update({k: tune.grid_search(v) for k, v in self.grids.items()})
        for key, (dist, args) in self.randoms.items():
            integer = KEYS[key].kind is int
            if dist == "choice":
                space[key] = tune.choice(args)
            elif dist == "loguniform" and integer:
                space[key] = tune.lograndint(args[0], args[1] + 1)  # Tune's upper end is exclusive
            elif dist == "loguniform":
                space[key] = tune.loguniform(*args)
            elif integer:  # uniform or randint of an integer key
                space[key] = tune.randint(args[0], args[1] + 1)
            else:
                space[key] = tune.uniform(*args)
        return space

    def optuna_space(self) -> dict[str, Any]:
        """The random keys as Optuna distributions, for a model-based searcher (TPE).

        Grids (the seeds among them) are not the searcher's to choose: every configuration it
        proposes runs at every grid point (see `grid_points`). An integer key drawn from a range
        stays an integer; both ends are included, as in the YAML.

        >>> space = parse_space({"dropout": {"uniform": [0, 0.5]}, "seeds": 2})
        >>> space.optuna_space()
        {'dropout': FloatDistribution(high=0.5, log=False, low=0.0, step=None)}
        """
        import optuna.distributions as od

        space: dict[str, Any] = {}
        for key, (dist, args) in self.randoms.items():
            if dist == "choice":
                space[key] = od.CategoricalDistribution(args)
            elif KEYS[key].kind is int:
                space[key] = od.IntDistribution(args[0], args[1], log=dist == "loguniform")
            else:
                space[key] = od.FloatDistribution(args[0], args[1], log=dist == "loguniform")
        return space

    def grid_points(self) -> list[dict[str, Any]]:
        """Every combination of the grid keys' values (one empty point without grids)."""
        names = list(self.grids)
        return [
            dict(zip(names, values, strict=True))
            for values in itertools.product(*(self.grids[n] for n in names))
        ]

    def grid_configs(self) -> list[dict[str, Any]]:
        """Every configuration of a space without random keys (for tests and dry runs)."""
        return [{**self.constants, **point} for point in self.grid_points()]


def _coerce(where: str, key: str, value: Any) -> Any:
    spec = KEYS[key]
    if spec.kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if spec.kind is int and isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, spec.kind) or (spec.kind is not bool and isinstance(value, bool)):
        raise SpaceError(f"{where}: key '{key}': {value!r} is not {spec.rule}")
    if spec.kind is float and not math.isfinite(value):
        raise SpaceError(f"{where}: key '{key}': {value!r} is not {spec.rule}")
    if not spec.check(value):
        raise SpaceError(f"{where}: key '{key}': {value!r} is out of range; expected {spec.rule}")
    return value


def _parse_distribution(where: str, key: str, value: dict[str, Any]) -> tuple[str, list[Any]]:
    if len(value) != 1 or next(iter(value)) not in DISTRIBUTIONS:
        raise SpaceError(
            f"{where}: key '{key}': expected a constant or one of "
            f"{', '.join(d + ': [...]' for d in DISTRIBUTIONS)}, got {value!r}"
        )
    dist, args = next(iter(value.items()))
    if not isinstance(args, list) or not args:
        raise SpaceError(f"{where}: key '{key}': '{dist}' needs a non-empty list, got {args!r}")
    args = [_coerce(where, key, a) for a in args]
    if dist in ("uniform", "loguniform", "randint"):
        if len(args) != 2 or not args[0] < args[1]:
            raise SpaceError(f"{where}: key '{key}': '{dist}' needs [low, high] with low < high")
        if KEYS[key].kind is bool or KEYS[key].kind is str:
            raise SpaceError(f"{where}: key '{key}': '{dist}' needs a numeric key")
        if dist == "randint" and KEYS[key].kind is not int:
            raise SpaceError(f"{where}: key '{key}': 'randint' needs an integer key")
    return dist, args


def parse_space(document: Any, *, source: str = "<space>", seeds: int | None = None) -> Space:
    """Validate a loaded YAML document; `seeds` (from --seeds) overrides the document's `seeds`."""
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise SpaceError(
            f"{source}: expected a mapping of keys to values, got {type(document).__name__}"
        )
    document = dict(document)
    file_seeds = document.pop("seeds", None)
    constants = {k: spec.default for k, spec in KEYS.items()}
    grids: dict[str, list[Any]] = {}
    randoms: dict[str, tuple[str, list[Any]]] = {}
    for key, value in document.items():
        if key == "mixup":
            raise SpaceError(
                f"{source}: key 'mixup': every configuration is trained with and without MixUp "
                f"(both arms in one trial); remove this key"
            )
        if key not in KEYS:
            raise SpaceError(f"{source}: unknown key {key!r}; known keys: seeds, {', '.join(KEYS)}")
        if isinstance(value, dict):
            dist, args = _parse_distribution(source, key, value)
            constants.pop(key)
            if dist == "grid":
                grids[key] = args
            else:
                randoms[key] = (dist, args)
        elif isinstance(value, list):
            raise SpaceError(
                f"{source}: key '{key}': a list needs a kind, e.g. {key}: {{grid: {value}}}"
            )
        else:
            constants[key] = _coerce(source, key, value)
    if constants.get("batch_norm") is False:
        for key in BATCH_NORM_PLACES:
            asked = grids.get(key) or randoms.get(key, ("", []))[1] or [constants.get(key)]
            if key in document and True in asked:
                raise SpaceError(
                    f"{source}: key '{key}': true needs batch_norm: true "
                    "(batch_norm: false switches every batch norm off)"
                )
    n_seeds = seeds if seeds is not None else file_seeds
    if n_seeds is not None:
        if (
            isinstance(n_seeds, bool)
            or not isinstance(n_seeds, int)
            or not 1 <= n_seeds <= MAX_SEEDS
        ):
            raise SpaceError(
                f"{source}: 'seeds' must be an integer from 1 to {MAX_SEEDS}, got {n_seeds!r}"
            )
        constants.pop("seed", None)
        randoms.pop("seed", None)
        grids["seed"] = list(range(n_seeds))
    return Space(source=source, constants=constants, grids=grids, randoms=randoms)


def builtin_spaces() -> list[str]:
    """The names of the spaces shipped in the package, e.g. ``quickstart``."""
    files = resources.files(BUILTIN_PACKAGE).iterdir()
    return sorted(f.name.removesuffix(".yaml") for f in files if f.name.endswith(".yaml"))


def is_builtin(space: str | Path) -> bool:
    """Whether ``--space`` names a built-in space; names come first (``./NAME`` is a file)."""
    return str(space) in builtin_spaces()


def _read(space: str | Path) -> tuple[str, str]:
    """The YAML text of a space and the name its messages give it."""
    if is_builtin(space):
        resource = resources.files(BUILTIN_PACKAGE).joinpath(f"{space}.yaml")
        return resource.read_text(encoding="utf-8"), f"built-in space {space}"
    path = Path(space)
    try:
        return path.read_text(), str(path)
    except FileNotFoundError:
        raise SpaceError(
            f"{space}: no such search-space file, and not a built-in space "
            f"(built-in: {', '.join(builtin_spaces())})"
        ) from None
    except OSError as e:
        raise SpaceError(f"{path}: cannot read the search space ({e.strerror or e})") from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader (tags never construct objects) that refuses a key given twice in one
    mapping, where plain safe_load silently keeps the last: `num_conv: 1` ... `num_conv: 3`."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults` merges, not repeats
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key!r} is given twice ({_lines(first, key_node.start_mark.line)}); "
                    "keep one",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def _lines(first: int, second: int) -> str:
    return f"line {first + 1}" if first == second else f"lines {first + 1} and {second + 1}"


def load_space(space: str | Path, *, seeds: int | None = None) -> Space:
    """Read and validate a search space, a built-in name or a YAML file (a safe loader: tags never
    construct objects; a key given twice is refused)."""
    text, source = _read(space)
    try:
        document = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: safe
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise SpaceError(
            f"{source}: not valid YAML{at}: {getattr(e, 'problem', None) or e}"
        ) from None
    return parse_space(document, source=source, seeds=seeds)


# Keys that tell pairs of one architecture apart, never part of its label: the arm, the replicate
# number, and the number a searcher gives each sample (tune_mnist.replicates).
ARM_KEYS = ("mixup", "seed", SAMPLE_KEY)
# The two arms of every pair, by name and by the value of the `mixup` key.
ARMS = {"plain": False, "mixup": True}
# The architecture label of the rows that pool every architecture.
POOLED = "all"


def architecture_label(config: dict[str, Any], varying: list[str]) -> str:
    """A short name for a configuration, less its MixUp arm and seed: 'num_conv=2 num_dense=0'.

    Numbers drawn from a continuous range keep 3 significant digits, so that a random space's
    labels stay readable ('dropout=0.438', not 'dropout=0.4382421154053519').

    >>> architecture_label({"num_conv": 2, "dropout": 0.4382421154053519, "seed": 1},
    ...                    ["num_conv", "dropout", "seed"])
    'num_conv=2 dropout=0.438'
    """
    keys = [k for k in varying if k not in ARM_KEYS]
    return " ".join(f"{k}={_short(config[k])}" for k in keys) or "base"


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
