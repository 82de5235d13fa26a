from pathlib import Path

import pytest
import yaml

from tune_mnist.space import SpaceError, builtin_spaces, load_space, parse_space

REPO = Path(__file__).resolve().parent.parent


def test_seed_grid_is_the_original_study():
    space = load_space("seed_grid")
    configs = space.grid_configs()
    assert len(configs) == 9  # pairs: each trains a plain and a MixUp model
    architectures = {(c, d) for c in (2, 3, 4) for d in (0, 1, 2)}
    assert {(c["num_conv"], c["num_dense"]) for c in configs} == architectures
    notebook = {
        "filters": 24, "filters_step": 12, "kernel_size": 3, "pooling": "none", "batch_norm": True,
        "block_order": "relu_bn", "dense_batch_norm": False, "final_batch_norm": True,
        "dense_units": 10, "dropout": 0.4, "dropout_at": "flatten", "optimizer": "adam",
        "learning_rate": 1e-3, "batch_size": 50, "mixup_alpha": 0.2, "seed": 0,
    }  # fmt: skip
    assert all({k: c[k] for k in notebook} == notebook for c in configs)


def test_block_style_defaults_keep_the_project_style():
    constants = parse_space({}).constants
    assert constants["block_order"] == "bn_relu" and constants["dropout_at"] == "blocks"
    assert constants["dense_batch_norm"] is True and constants["final_batch_norm"] is False


def test_batch_norm_grid_may_combine_with_batch_norm_places():
    space = parse_space({"batch_norm": {"grid": [False, True]}, "final_batch_norm": True})
    assert space.grid_size == 2
    off = parse_space({"batch_norm": False, "final_batch_norm": False})
    assert off.constants["batch_norm"] is False


def test_seeds_repeat_every_configuration_and_cli_overrides():
    space = load_space("seed_grid", seeds=3)
    assert space.num_trials(1) == 27
    assert sorted({c["seed"] for c in space.grid_configs()}) == [0, 1, 2]


def test_shipped_spaces_parse():
    """Rule: the built-in spaces are all found by name, and each parses into a grid."""
    expected = {"quickstart", "seed_grid", "asha_wide", "keras_io_mixup"}
    assert expected <= set(builtin_spaces()), builtin_spaces()
    for name in builtin_spaces():
        space = load_space(name)
        assert space.num_trials(1) >= 1 and space.source == f"built-in space {name}"


def test_search_spaces_in_the_checkout_shows_the_built_in_files():
    """Rule: the checkout's search_spaces/ holds the built-in spaces (a link to the package's)."""
    shown = sorted(p.stem for p in (REPO / "search_spaces").glob("*.yaml"))
    assert shown == builtin_spaces()
    by_path = load_space(REPO / "search_spaces" / "seed_grid.yaml")
    assert by_path.to_dict() == load_space("seed_grid").to_dict()


def test_an_unknown_name_lists_the_built_in_spaces(tmp_path, monkeypatch):
    """Rule: a --space that is neither a file nor a built-in name fails naming every built-in."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SpaceError) as err:
        load_space("nosuch")
    assert str(err.value) == (
        "nosuch: no such search-space file, and not a built-in space "
        f"(built-in: {', '.join(builtin_spaces())})"
    )


def test_a_file_is_read_where_no_built_in_has_its_name(tmp_path, monkeypatch):
    """Rule: names come first; a file shadowing a built-in name is read as ./NAME."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "quickstart").write_text("num_conv: 0\n")
    assert load_space("quickstart").source == "built-in space quickstart"
    assert load_space("./quickstart").constants["num_conv"] == 0


def test_random_keys_become_tune_domains():
    from ray import tune

    space = parse_space({"dropout": {"uniform": [0.1, 0.5]}, "num_conv": {"randint": [1, 3]}})
    params = space.param_space()
    assert isinstance(params["dropout"], tune.search.sample.Float)
    assert params["num_conv"].upper == 4  # inclusive in the YAML, exclusive in Tune


def test_an_integer_key_drawn_from_a_range_stays_an_integer():
    """Rule: `filters: {loguniform: [8, 64]}` gives the model integers, in random and TPE search
    alike (Tune's uniform and loguniform draw floats)."""
    space = parse_space({"filters": {"loguniform": [8, 64]}, "dense_units": {"uniform": [8, 64]}})
    params = space.param_space()
    for key in ("filters", "dense_units"):
        draws = [params[key].sample() for _ in range(50)]
        assert all(isinstance(d, int) and 8 <= d <= 64 for d in draws), (key, draws)


@pytest.mark.parametrize(
    "text, message",
    [
        ("num_conv: [2, 3\n", "not valid YAML at line"),
        ("colour: red\n", "unknown key 'colour'"),
        ("num_conv: two\n", "key 'num_conv': 'two' is not an integer"),
        ("num_conv: {grid: []}\n", "key 'num_conv': 'grid' needs a non-empty list"),
        ("dropout: 1.0\n", "key 'dropout': 1.0 is out of range"),
        ("dropout: {grid: [0.2, -0.1]}\n", "key 'dropout': -0.1 is out of range"),
        ("learning_rate: 0\n", "key 'learning_rate': 0.0 is out of range"),
        ("learning_rate: -0.01\n", "key 'learning_rate': -0.01 is out of range"),
        ("num_conv: 7\n", "key 'num_conv': 7 is out of range"),
        ("mixup: yes please\n", "key 'mixup'"),
        ("mixup: {grid: [false, true]}\n", "trained with and without MixUp"),
        ("uniform_key: !!python/object/apply:os.system ['echo hacked']\n", "not valid YAML"),
        ("seeds: 0\n", "'seeds' must be an integer"),
        # Seeds reach NumPy and TensorFlow, which take 32-bit seeds: refused before training.
        ("seed: 2147483648\n", "key 'seed': 2147483648 is out of range"),
        ("seed: -1\n", "key 'seed': -1 is out of range"),
        ("seed: {grid: [0, 4294967296]}\n", "key 'seed': 4294967296 is out of range"),
        # Plain YAML keeps the last of two equal keys: a typo that silently changes the space.
        ("num_conv: 1\nfilters: 8\nnum_conv: 3\n", "key 'num_conv' is given twice (lines 1 and 3)"),
        ("dropout: {grid: [0.1], grid: [0.2]}\n", "key 'grid' is given twice (line 1)"),
        ("- a list\n", "expected a mapping"),
        ("dropout: {uniform: [0.5, 0.1]}\n", "low < high"),
        ("block_order: conv_bn_relu\n", "key 'block_order': 'conv_bn_relu' is out of range"),
        ("block_order: {uniform: [bn_relu, relu_bn]}\n", "key 'block_order': 'uniform' needs a"),
        ("dropout_at: everywhere\n", "key 'dropout_at': 'everywhere' is out of range"),
        ("dropout_at: 1\n", "key 'dropout_at': 1 is not 'blocks', 'flatten' or 'features'"),
        ("padding: full\n", "key 'padding': 'full' is out of range; expected 'same' or 'valid'"),
        ("global_pooling: avg\n", "key 'global_pooling': 'avg' is not true or false"),
        ("dense_batch_norm: 1\n", "key 'dense_batch_norm': 1 is not true or false"),
        ("final_batch_norm: maybe\n", "key 'final_batch_norm': 'maybe' is not true or false"),
        ("batch_norm: false\nfinal_batch_norm: true\n", "'final_batch_norm': true needs"),
        ("batch_norm: false\ndense_batch_norm: {grid: [0, 1]}\n", "'dense_batch_norm': 0 is not"),
        ("batch_norm: false\ndense_batch_norm: {choice: [true]}\n", "'dense_batch_norm': true"),
    ],
)
def test_bad_space_names_file_key_and_problem(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SpaceError) as err:
        load_space(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_optuna_space_holds_the_random_keys_with_both_ends_included():
    """Rule: a model-based searcher gets every random key (integers stay integers, both ends
    included as in the YAML) and no grid key: grids (the seeds) run for every proposal."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    space = parse_space(
        {
            "num_conv": {"randint": [1, 4]},
            "filters": {"loguniform": [8, 64]},
            "pooling": {"choice": ["none", "max"]},
            "dropout": {"uniform": [0.0, 0.5]},
            "learning_rate": {"loguniform": [1e-4, 1e-2]},
            "batch_size": {"grid": [32, 64]},
            "seeds": 2,
        }
    )
    assert space.optuna_space() == {
        "num_conv": IntDistribution(1, 4),
        "filters": IntDistribution(8, 64, log=True),
        "pooling": CategoricalDistribution(["none", "max"]),
        "dropout": FloatDistribution(0.0, 0.5),
        "learning_rate": FloatDistribution(1e-4, 1e-2, log=True),
    }
    assert space.grid_points() == [{"batch_size": b, "seed": s} for b in (32, 64) for s in (0, 1)]
    assert parse_space({}).grid_points() == [{}]


def test_the_largest_32_bit_seed_is_accepted(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("seed: 2147483647\n")
    assert load_space(path).constants["seed"] == 2**31 - 1


def test_a_yaml_merge_key_is_not_a_duplicate():
    """`<<: *defaults` followed by an override is YAML's way to reuse a mapping, not a repeat."""
    from tune_mnist.space import _UniqueKeyLoader

    text = "base: &base {grid: [1, 2]}\nnum_conv:\n  <<: *base\n  grid: [0, 1]\n"
    assert yaml.load(text, Loader=_UniqueKeyLoader)["num_conv"] == {"grid": [0, 1]}


def test_num_samples_on_a_space_without_random_keys_adds_replicates_never_copies():
    """Rule: --num-samples K without random keys is --seeds N*K: replicate numbers 0..N*K-1, each
    configuration once per number, so no two pairs are copies of each other."""
    space = load_space("quickstart", seeds=2).replicated(3)
    configs = space.grid_configs()
    assert space.grids["seed"] == [0, 1, 2, 3, 4, 5] and space.replicates == 6
    assert space.to_dict() == load_space("quickstart", seeds=6).to_dict()
    assert len(configs) == 12 and len({tuple(sorted(c.items())) for c in configs}) == 12
    # A constant replicate number is the first of K.
    assert parse_space({"seed": 7}).replicated(2).grid_configs() == [
        parse_space({"seed": 7}).constants | {"seed": n} for n in (7, 8)
    ]


def test_a_space_with_random_keys_is_sampled_not_replicated():
    """Rule: with random keys each sample draws a configuration; the replicates stay `seeds`."""
    space = load_space("asha_wide")
    assert space.replicated(4) is space and space.replicates == 1
