"""The paired estimate: MixUp − plain over independent replicates, with both noise sources once.

Each pair p of stratum (grid cell) c has per-image differences δ[p, i] = correct_mixup −
correct_plain on the m validation images every pair shares. Its model is

    δ[p, i] = θ_c + u_p + a_ci + e_pi

with a replicate effect u_p (new initial weights, batches, MixUp draws), an image effect a_ci
(MixUp helps on some images, hurts on others; the same images for every pair) and a residual
e_pi. The estimate is the mean over strata of each stratum's mean over its pairs, and its variance

    Σ_c (σ²_u,c + σ²_e,c / m) / (C² n_c)   +   Var_i(mean_c a_ci) / m
    ------------- replicate part --------     --- image part ---

The replicate part is estimated from each stratum's own replicates (the spread of its pair means);
the image part from the spread of the image means less the residual's share of that spread, which
the replicate part already holds (the residual mean square of each stratum's pair × image table).
The image part is a difference of two mean squares, so its own degrees of freedom are
Satterthwaite's for that difference: close to m − 1 when the image effect dominates, far fewer when
the image means' spread is mostly residual. Degrees of freedom are Welch-Satterthwaite's over the
strata and the image part, and the p-value
comes from the same t statistic, so "p < 0.05" and "the 95% interval excludes 0" always agree.

>>> deltas = np.array([[1, 0, 0, 0], [0, 0, -1, 0], [1, 1, 0, 0], [0, 1, 0, 0]])
>>> e = paired_estimate(deltas.mean(axis=1), ["a", "a", "b", "b"], deltas)
>>> print(e.diff, e.n_pairs, e.n_strata, round(e.df, 1), e.ci_low < e.diff < e.ci_high)
0.1875 4 2 3.0 True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = ["Estimate", "components", "paired_estimate", "t_interval"]

NO_PAIR = "no pair compared"
ONE_PAIR = "one pair: no interval (run more replicates: seeds: 3 or more)"
NO_SPREAD = "no spread between pairs or images: every pair moved by the same amount"
UNSTRATIFIED = "a cell has one replicate: pairs pooled as one sample (run seeds: 2 or more)"


@dataclass(frozen=True)
class Estimate:
    """One row's numbers: the estimate, its interval and where its variance comes from."""

    diff: float
    se: float
    df: float
    ci_low: float
    ci_high: float
    p_value: float
    replicate_variance: float
    image_variance: float
    n_pairs: int
    n_strata: int
    note: str = ""


def components(
    cell_means: np.ndarray,
    cell_variances: np.ndarray,
    cell_sizes: np.ndarray,
    residual_mean_squares: np.ndarray | None = None,
    image_variance: np.ndarray | None = None,
    images: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(estimate, replicate variance, its Welch-Satterthwaite df, image variance, its df), cells
    last.

    Works on any leading axes, so a simulation can pass thousands of studies at once.
    ``cell_variances`` are the sample variances (ddof 1) of each cell's pair means;
    ``residual_mean_squares`` each cell's pair × image residual mean square and
    ``image_variance`` the sample variance over images of the stratified image means (both
    absent: the replicate part only).
    """
    strata = cell_means.shape[-1]
    estimate = cell_means.mean(axis=-1)
    parts = cell_variances / (strata**2 * cell_sizes)
    replicate = parts.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = replicate**2 / (parts**2 / (cell_sizes - 1)).sum(axis=-1)
    if residual_mean_squares is None or image_variance is None:
        return estimate, replicate, df, np.zeros_like(replicate), np.ones_like(replicate)
    shares = residual_mean_squares / (strata**2 * cell_sizes)
    residual_share = shares.sum(axis=-1)
    difference = np.maximum(image_variance - residual_share, 0.0)
    # Satterthwaite for V − R: V has m − 1 df, each cell's residual (n_c − 1)(m − 1).
    spread = image_variance**2 / (images - 1) + (shares**2 / ((cell_sizes - 1) * (images - 1))).sum(
        axis=-1
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        image_df = np.where(difference > 0, difference**2 / spread, 1.0)
    return estimate, replicate, df, difference / images, image_df


def t_interval(
    estimate: np.ndarray,
    replicate: np.ndarray,
    replicate_df: np.ndarray,
    image: np.ndarray,
    image_df: np.ndarray | float,
    confidence: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(low, high, df, p): estimate ± t(df) · se, with Welch-Satterthwaite df over both parts.

    NaN where the variance is zero: equal accuracy steps are common and say nothing of the noise.
    """
    variance = replicate + image
    with np.errstate(divide="ignore", invalid="ignore"):
        # A part with no variance adds nothing to the df's denominator (its own df may be NaN).
        spread = np.where(replicate > 0, replicate**2 / replicate_df, 0.0)
        df = variance**2 / (spread + image**2 / image_df)
        se = np.where(variance > 0, np.sqrt(variance), np.nan)
        half = stats.t.ppf((1 + confidence) / 2, df) * se
        p = 2 * stats.t.sf(np.abs(estimate) / se, df)
    return estimate - half, estimate + half, df, p


def paired_estimate(
    values: Sequence[float] | np.ndarray,
    strata: Sequence[object] | np.ndarray,
    deltas: np.ndarray | None = None,
    *,
    confidence: float = 0.95,
) -> Estimate:
    """The estimate of one row from its pairs: ``values`` one difference per pair, ``strata`` one
    label per pair (every pair the same label: a plain mean over pairs), ``deltas`` (optional) the
    (pairs, images) per-image differences whose row means are ``values``.

    Strata are used when every stratum has two replicates or more; otherwise the pairs are pooled
    as one sample (the note says so), which counts differences between strata as noise.
    """
    values = np.asarray(values, dtype=np.float64)
    codes = np.unique(np.asarray(strata, dtype=str), return_inverse=True)[1].reshape(-1)
    sizes = np.bincount(codes) if len(codes) else np.zeros(0, np.int64)
    note = ""
    if len(sizes) > 1 and sizes.min() < 2:
        codes, sizes, note = np.zeros_like(codes), np.array([len(codes)]), UNSTRATIFIED
    if len(values) < 2:
        diff = float(values[0]) if len(values) else np.nan
        return _no_interval(diff, len(values), len(sizes), ONE_PAIR if len(values) else NO_PAIR)
    cells = [np.flatnonzero(codes == c) for c in range(len(sizes))]
    means = np.array([values[rows].mean() for rows in cells])
    variances = np.array([values[rows].var(ddof=1) for rows in cells])
    image_parts: tuple[np.ndarray | None, np.ndarray | None, int] = (None, None, 0)
    if deltas is not None:
        image_parts = _image_statistics(np.asarray(deltas, dtype=np.float64), cells)
    estimate, replicate, replicate_df, image, image_df = components(
        means, variances, sizes.astype(np.float64), image_parts[0], image_parts[1], image_parts[2]
    )
    low, high, df, p = t_interval(estimate, replicate, replicate_df, image, image_df, confidence)
    if not replicate + image > 0:
        note = NO_SPREAD
    return Estimate(
        diff=float(estimate),
        se=float(np.sqrt(replicate + image)),
        df=float(df),
        ci_low=float(low),
        ci_high=float(high),
        p_value=float(p),
        replicate_variance=float(replicate),
        image_variance=float(image),
        n_pairs=len(values),
        n_strata=len(sizes),
        note=note,
    )


def _image_statistics(
    deltas: np.ndarray, cells: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, int]:
    """Each cell's pair × image residual mean square, the variance of the stratified image
    means, and the number of images."""
    images = deltas.shape[1]
    residual = np.empty(len(cells))
    image_means = np.zeros(images)
    for c, rows in enumerate(cells):
        table = deltas[rows]
        n = len(rows)
        pair_means, column_means, grand = table.mean(axis=1), table.mean(axis=0), table.mean()
        squares = (
            np.square(table).sum()
            - images * np.square(pair_means).sum()
            - n * np.square(column_means).sum()
            + n * images * grand**2
        )
        residual[c] = max(squares, 0.0) / ((n - 1) * (images - 1))
        image_means += column_means / len(cells)
    return residual, np.asarray(image_means.var(ddof=1)), images


def _no_interval(diff: float, pairs: int, strata: int, note: str) -> Estimate:
    nan = float("nan")
    return Estimate(diff, nan, nan, nan, nan, nan, nan, nan, pairs, strata, note)
