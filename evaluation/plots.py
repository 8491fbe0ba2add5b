"""Report figures drawn with matplotlib's Agg canvas, returned as base64 PNG data URIs.

Figures are built on `matplotlib.figure.Figure` directly (no pyplot global state). Colours
are the Okabe-Ito palette, which stays distinct under the common colour-vision deficiencies;
lines also differ in style so no meaning rests on colour alone.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

OKABE_ITO = (
    "#0072B2",  # blue
    "#D55E00",  # vermillion
    "#009E73",  # bluish green
    "#CC79A7",  # reddish purple
    "#E69F00",  # orange
    "#56B4E9",  # sky blue
    "#000000",
)
STYLES = ("-", "--", "-.", ":", "-", "--", "-.")
GREY = "#595959"


def _figure(width: float = 6.4, height: float = 4.4) -> tuple[Figure, Axes]:
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def to_data_uri(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _finish(ax: Axes, title: str, xlabel: str, ylabel: str, legend: bool = True) -> None:
    ax.set_title(title, fontsize=12)
    ax.set_xlabel(xlabel, fontsize=11)
    ax.set_ylabel(ylabel, fontsize=11)
    ax.grid(True, color="#dddddd", linewidth=0.6)
    if legend:
        ax.legend(fontsize=9, frameon=False)


def roc_plot(curves: Mapping[str, pd.DataFrame], aucs: Mapping[str, float]) -> str:
    fig, ax = _figure()
    ax.plot([0, 1], [0, 1], color=GREY, linewidth=0.8, linestyle=":", label="chance")
    for i, (name, curve) in enumerate(curves.items()):
        ax.plot(
            curve["fpr"],
            curve["tpr"],
            color=OKABE_ITO[i],
            linestyle=STYLES[i],
            label=f"{name} (AUROC {aucs[name]:.3f})",
        )
    _finish(ax, "ROC curves", "False-positive rate (1 - specificity)", "Sensitivity")
    return to_data_uri(fig)


def pr_plot(curves: Mapping[str, pd.DataFrame], prevalence: float) -> str:
    fig, ax = _figure()
    ax.axhline(prevalence, color=GREY, linewidth=0.8, linestyle=":", label="prevalence")
    for i, (name, curve) in enumerate(curves.items()):
        ax.plot(
            curve["recall"], curve["precision"], color=OKABE_ITO[i], linestyle=STYLES[i], label=name
        )
    ax.set_ylim(0, 1)
    _finish(ax, "Precision and recall", "Recall (sensitivity)", "Precision (PPV)")
    return to_data_uri(fig)


def calibration_plot(curve: pd.DataFrame, baseline: pd.DataFrame | None = None) -> str:
    fig, ax = _figure()
    top = float(max(curve["hi"].max(), curve["mean_p"].max())) * 1.05
    ax.plot([0, top], [0, top], color=GREY, linewidth=0.8, linestyle=":", label="perfect")
    err = np.vstack([curve["observed"] - curve["lo"], curve["hi"] - curve["observed"]])
    err = np.clip(np.nan_to_num(err.astype(float)), 0, None)  # rounding can dip below zero
    ax.errorbar(
        curve["mean_p"],
        curve["observed"],
        yerr=err,
        color=OKABE_ITO[0],
        marker="o",
        capsize=3,
        label="model (95% Wilson interval)",
    )
    if baseline is not None:
        ax.plot(
            baseline["mean_p"],
            baseline["observed"],
            color=OKABE_ITO[1],
            marker="s",
            linestyle="--",
            label="baseline",
        )
    _finish(ax, "Calibration by tenth of predicted risk", "Mean predicted risk", "Observed rate")
    return to_data_uri(fig)


def decision_plot(curves: Mapping[str, pd.DataFrame]) -> str:
    fig, ax = _figure()
    first = next(iter(curves.values()))
    ax.plot(first["threshold"], first["treat_none"], color=GREY, linestyle=":", label="treat none")
    ax.plot(
        first["threshold"],
        first["treat_all"],
        color=OKABE_ITO[6],
        linestyle="-.",
        label="treat all",
    )
    for i, (name, curve) in enumerate(curves.items()):
        ax.plot(
            curve["threshold"], curve["model"], color=OKABE_ITO[i], linestyle=STYLES[i], label=name
        )
    best = max(float(c["model"].max()) for c in curves.values())
    ax.set_ylim(-0.1 * max(best, 0.01), max(best, 0.01) * 1.15)
    _finish(ax, "Decision curves", "Threshold probability", "Net benefit")
    return to_data_uri(fig)


def capacity_plot(top: pd.DataFrame) -> str:
    fig, ax = _figure()
    x = np.arange(len(top))
    labels = [f"top {f * 100:g}%" for f in top["top_fraction"]]
    ax.bar(x - 0.2, top["sensitivity"], 0.4, color=OKABE_ITO[0], label="share of all events")
    ax.bar(x + 0.2, top["ppv"], 0.4, color=OKABE_ITO[4], hatch="//", label="PPV")
    ax.set_xticks(x, labels)
    ax.set_ylim(0, 1)
    _finish(ax, "Flagging the highest-risk people", "People flagged", "Proportion")
    return to_data_uri(fig)


def forest_plot(
    table: pd.DataFrame, metric: str, label: str, overall: float, limits: Sequence[float] = ()
) -> str:
    """Each group's value with its interval; the overall value and any limits as lines."""
    rows = table.reset_index(drop=True)
    fig, ax = _figure(6.4, max(2.5, 0.28 * len(rows) + 1.2))
    ypos = np.arange(len(rows))[::-1]
    value = rows[metric].to_numpy(float)
    err = np.vstack([value - rows[f"{metric}_lo"], rows[f"{metric}_hi"] - value])
    err = np.clip(np.nan_to_num(err.astype(float)), 0, None)  # an interval may miss its point
    ax.errorbar(value, ypos, xerr=err, fmt="o", color=OKABE_ITO[0], capsize=2)
    ax.axvline(overall, color=OKABE_ITO[1], linestyle="--", label=f"overall {overall:.2f}")
    for i, lim in enumerate(limits):
        ax.axvline(lim, color=GREY, linestyle=":", label="limit" if i == 0 else None)
    names = [
        f"{d}: {g} (n={n})"
        for d, g, n in zip(rows["descriptor"], rows["group"], rows["n"], strict=True)
    ]
    ax.set_yticks(ypos, names, fontsize=8)
    _finish(ax, f"{label} by group (95% interval)", label, "")
    return to_data_uri(fig)


def importance_plot(table: pd.DataFrame, top: int = 15) -> str:
    rows = table.head(top).iloc[::-1]
    fig, ax = _figure(6.4, max(2.5, 0.3 * len(rows) + 1.2))
    colours = [OKABE_ITO[2] if m else OKABE_ITO[0] for m in rows["modifiable"]]
    ax.barh(rows["label"], rows["mean_abs_shap"], color=colours)
    ax.tick_params(axis="y", labelsize=8)
    _finish(ax, "Global importance (green: modifiable)", "Mean |SHAP value|", "", legend=False)
    return to_data_uri(fig)


def _colour_scale(values: pd.Series) -> np.ndarray:
    """Feature values as ranks in [0, 1] (0.5 where not numeric)."""
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().sum() == 0:
        return np.full(len(values), 0.5)
    ranks = numeric.rank(pct=True).fillna(0.5).to_numpy(float)
    return ranks


def beeswarm_plot(
    shap_values: np.ndarray,
    feature_values: pd.DataFrame,
    order: Sequence[str],
    labels: Mapping[str, str],
    max_points: int = 2000,
    seed: int = 0,
) -> str:
    """SHAP value per person for each feature, coloured by the feature's value (low to high)."""
    rng = np.random.default_rng(seed)
    n = shap_values.shape[0]
    rows = rng.choice(n, size=min(n, max_points), replace=False)
    names = list(order)[::-1]
    fig, ax = _figure(6.8, max(2.5, 0.35 * len(names) + 1.4))
    scatter = None
    for y, name in enumerate(names):
        j = feature_values.columns.get_loc(name)
        x = shap_values[rows, j]
        jitter = rng.uniform(-0.3, 0.3, size=len(rows))
        colour = _colour_scale(feature_values[name].iloc[rows])
        scatter = ax.scatter(x, y + jitter, c=colour, cmap="viridis", s=5, vmin=0, vmax=1)
    ax.axvline(0, color=GREY, linewidth=0.8)
    ax.set_yticks(np.arange(len(names)), [labels[n] for n in names], fontsize=8)
    if scatter is not None:
        bar = fig.colorbar(scatter, ax=ax, ticks=[0, 1])
        bar.ax.set_yticklabels(["low", "high"])
        bar.set_label("Feature value")
    _finish(ax, "SHAP values per person", "SHAP value (log-odds)", "", legend=False)
    return to_data_uri(fig)


def psi_plot(labels: Sequence[str], values: Sequence[float], watch: float, retrain: float) -> str:
    """Horizontal bars of PSI per feature, largest at the top, with the two limits."""
    fig, ax = _figure(6.8, max(2.5, 0.32 * len(labels) + 1.3))
    ypos = np.arange(len(labels))[::-1]
    colours = [
        OKABE_ITO[1] if v >= retrain else OKABE_ITO[4] if v >= watch else OKABE_ITO[0]
        for v in values
    ]
    ax.barh(ypos, values, color=colours)
    ax.axvline(watch, color=GREY, linestyle="--", label=f"watch {watch:g}")
    ax.axvline(retrain, color=OKABE_ITO[1], linestyle=":", label=f"retrain {retrain:g}")
    ax.set_yticks(ypos, list(labels), fontsize=8)
    _finish(ax, "Feature drift since the validation date", "Population stability index", "")
    return to_data_uri(fig)


def shares_plot(
    bins: Sequence[str], reference: Sequence[int], current: Sequence[int], label: str
) -> str:
    """Share of people in each bin at the validation date and now, side by side."""
    ref = np.asarray(reference, dtype=float)
    cur = np.asarray(current, dtype=float)
    fig, ax = _figure(6.4, 3.8)
    x = np.arange(len(bins))
    ax.bar(x - 0.2, ref / max(ref.sum(), 1), 0.4, color=OKABE_ITO[0], label="validation date")
    ax.bar(x + 0.2, cur / max(cur.sum(), 1), 0.4, color=OKABE_ITO[4], hatch="//", label="now")
    ax.set_xticks(x, list(bins), rotation=45, ha="right", fontsize=8)
    _finish(ax, label[:60], "", "Share of people")
    return to_data_uri(fig)
