"""Trial schedulers: small factories over Ray Tune's own, judging each pair by `pair_val_acc`.

A trial is a pair (both arms train in it), so a rung decision stops or continues the pair as a
whole, on the mean of its arms' `val_acc`: both arms always run the same number of epochs.
"""

from __future__ import annotations

from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

SCHEDULERS = ("grid", "asha")
METRIC, MODE = "pair_val_acc", "max"


def grid() -> TrialScheduler:
    """Every trial runs to `--max-epochs` (or its own early stop): the full, paired grid."""
    return FIFOScheduler()


def asha(*, max_epochs: int, grace_period: int = 1, reduction_factor: float = 3) -> TrialScheduler:
    """Asynchronous successive halving: stop the worse trials at epochs grace_period * rf^k.

    >>> scheduler = asha(max_epochs=20, grace_period=2)
    """
    # No metric or mode here: the Tuner passes its own (METRIC, MODE) and refuses a scheduler that
    # has them too.
    return ASHAScheduler(
        time_attr="training_iteration",
        max_t=max_epochs,
        grace_period=min(grace_period, max_epochs),
        reduction_factor=reduction_factor,
    )


def make_scheduler(
    name: str, *, max_epochs: int, grace_period: int, reduction_factor: float
) -> TrialScheduler:
    if name == "asha":
        return asha(
            max_epochs=max_epochs, grace_period=grace_period, reduction_factor=reduction_factor
        )
    return grid()
