"""PNG plots of the results: SI-SDRi against clean seconds and against model parameters.

Figures are built on matplotlib's object API with the Agg canvas, so no display and no pyplot
global state is involved, and saved through a temporary file and a rename.
"""

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from espnet2_pse.scoring.files import atomic_write
from espnet2_pse.scoring.results import (
    UNPROCESSED,
    ScoreEntry,
    aggregate,
    clean_seconds,
    model_params,
    models_of,
    settings_of,
    setting_title,
)

COLUMN = "si_sdri"
YLABEL = "SI-SDRi (dB)"


def _new_figure(ncols: int = 1):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.5 * ncols + 1.5, 4.0), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _method_colors(entries: Sequence[ScoreEntry]) -> Dict[str, str]:
    """One colour per method, the same in every panel and plot."""
    methods = sorted({method for method, _ in models_of(entries)})
    return {m: f"C{i % 10}" for i, m in enumerate(methods)}


_SETTING_STYLES = (("o", "-"), ("s", "--"), ("^", "-."), ("D", ":"), ("v", "-"), ("P", "--"))


def _save(fig, path: Path) -> Path:
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))


def plot_vs_clean_seconds(entries: Sequence[ScoreEntry], path: Path) -> Optional[Path]:
    """One panel per model size; per method, SI-SDRi (mean ± std over speakers) against the
    seconds of clean speech used (0 = zero-shot). Returns None when there is nothing to draw."""
    groups = aggregate(entries, COLUMN)
    models = models_of(entries)
    sizes: List[str] = list(dict.fromkeys(size for _, size in models))
    if not sizes or not groups:
        return None
    unprocessed = groups.get((UNPROCESSED, None, UNPROCESSED))
    colors = _method_colors(entries)
    fig = _new_figure(len(sizes))
    axes = fig.subplots(1, len(sizes), sharey=True, squeeze=False)[0]
    for ax, size in zip(axes, sizes):
        for method, _ in [m for m in models if m[1] == size]:
            points = [
                (clean_seconds(s), groups[(method, size, s)])
                for s in settings_of(entries)
                if (method, size, s) in groups
            ]
            if points:
                ax.errorbar(
                    [x for x, _ in points],
                    [a.mean for _, a in points],
                    yerr=[a.std for _, a in points],
                    marker="o",
                    capsize=3,
                    color=colors[method],
                    label=method,
                )
        if unprocessed is not None:
            ax.axhline(unprocessed.mean, color="gray", linestyle="--", linewidth=1, label=UNPROCESSED)
        ax.set_title(f"size: {size}")
        ax.set_xlabel("clean speech of the target speaker (s)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(YLABEL)
    axes[-1].legend(fontsize="small", loc="best")
    return _save(fig, path)


def plot_vs_params(entries: Sequence[ScoreEntry], path: Path) -> Optional[Path]:
    """Per (method, setting), SI-SDRi (mean ± std over speakers) against the parameter count
    of each model size (log axis). Returns None when no summary records a parameter count."""
    groups = aggregate(entries, COLUMN)
    params = model_params(entries)
    lines: Dict[Tuple[str, str], List[Tuple[int, float, float]]] = {}
    for method, size in models_of(entries):
        if (method, size) not in params:
            continue
        for setting in settings_of(entries):
            agg = groups.get((method, size, setting))
            if agg is not None:
                lines.setdefault((method, setting), []).append((params[(method, size)], agg.mean, agg.std))
    if not lines:
        return None
    colors = _method_colors(entries)
    styles = {s: _SETTING_STYLES[i % len(_SETTING_STYLES)] for i, s in enumerate(settings_of(entries))}
    fig = _new_figure()
    ax = fig.subplots()
    for (method, setting), points in lines.items():
        points.sort()
        marker, linestyle = styles[setting]
        ax.errorbar(
            [p[0] for p in points],
            [p[1] for p in points],
            yerr=[p[2] for p in points],
            marker=marker,
            linestyle=linestyle,
            color=colors[method],
            capsize=3,
            label=f"{method}, {setting_title(setting).lower()}",
        )
    unprocessed = groups.get((UNPROCESSED, None, UNPROCESSED))
    if unprocessed is not None:
        ax.axhline(unprocessed.mean, color="gray", linestyle="--", linewidth=1, label=UNPROCESSED)
    ax.set_xscale("log")
    ax.set_xlabel("model parameters")
    ax.set_ylabel(YLABEL)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.02, 0.5))
    return _save(fig, path)
