"""Pair seeds: every pair of a search its own replicate, the same one wherever it runs."""

import itertools

import numpy as np

from tune_mnist.replicates import SEED_MODULUS, marked_independent, pair_seed
from tune_mnist.space import load_space
from tune_mnist.trainable import TrialSettings

CONFIG = {"num_conv": 2, "dropout": 0.25, "seed": 0}


def test_the_pair_seed_is_the_same_in_every_process_and_python_version():
    """Rule: a fixed value (computed once): SHA-256 of canonical JSON, no salted built-in hash()."""
    assert pair_seed(CONFIG, run_seed=0) == 182_279_750
    assert pair_seed(CONFIG | {"num_conv": np.int64(2)}, run_seed=0) == 182_279_750


def test_every_pair_of_a_search_gets_its_own_seed():
    """Rule: replicate numbers, configurations and the run's seed each change the pair seed; the
    order of the keys and the arm do not (both arms of a pair share its seed)."""
    configs = load_space("seed_grid", seeds=5).grid_configs()
    seeds = [pair_seed(config, run_seed=0) for config in configs]
    assert len(set(seeds)) == len(configs) == 45
    assert all(0 <= seed < SEED_MODULUS for seed in seeds)
    # Not the old scheme: the same replicate number in two architectures gives two seeds.
    same_number = [pair_seed(c, run_seed=0) for c in configs if c["seed"] == 0]
    assert len(set(same_number)) == 9
    assert pair_seed(CONFIG, run_seed=1) != pair_seed(CONFIG, run_seed=0)
    reordered = dict(reversed(CONFIG.items()))
    assert pair_seed(reordered, run_seed=0) == pair_seed(CONFIG | {"mixup": True}, run_seed=0)
    assert pair_seed(reordered, run_seed=0) == pair_seed(CONFIG, run_seed=0)


def test_samples_with_equal_draws_are_different_replicates():
    """Rule: the searchers' sample number enters the seed, so equal random draws still differ."""
    seeds = {pair_seed(CONFIG | {"sample": n}, run_seed=0) for n in range(100)}
    assert len(seeds) == 100


def test_an_old_run_keeps_seeding_pairs_with_the_replicate_number():
    """Rule: a run whose manifest lacks the mark resumes with config['seed'] as the pair's seed,
    so its pairs continue exactly as they began; a new run uses the pair seed."""
    config = CONFIG | {"seed": 4}
    old = TrialSettings(max_epochs=1, run_seed=7, independent_replicates=False)
    new = TrialSettings(max_epochs=1, run_seed=7)
    assert old.seed_of(config) == 4
    assert new.seed_of(config) == pair_seed(config, run_seed=7) != 4
    assert marked_independent({"replicates": "independent", "args": {}})
    assert not marked_independent({"args": {}})


def test_no_two_pairs_of_a_grid_share_a_seed_across_run_seeds():
    """Rule: two runs with different --seed share no pair seed (their replicates are new too)."""
    configs = load_space("quickstart", seeds=3).grid_configs()
    seeds = [pair_seed(c, run_seed=r) for c, r in itertools.product(configs, range(3))]
    assert len(set(seeds)) == len(seeds) == 18
