"""Collect score summaries and render the RESULTS.md tables.

The directory convention that places each summary (method, model size, setting, speaker) is
documented in :mod:`espnet2_pse.bin.make_results`; :func:`collect` implements it.
"""

import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import yaml

logger = logging.getLogger(__name__)

UNPROCESSED = "unprocessed"
# Sub-directory of the interfering-talker condition, laid out as the exp dir itself.
INTERFERER = "interferer"
ZERO_SHOT = "zsl"
_FEW_SHOT = re.compile(r"^fsl_(\d+(?:\.\d+)?)s$")

# Summary column -> section title, in the order the sections appear. The model card reads
# these titles back to list the metrics a RESULTS.md reports.
METRIC_TITLES: Dict[str, str] = {
    "si_sdri": "SI-SDRi (dB)",
    "snri": "SNRi (dB)",
    "pesq": "PESQ-WB",
    "estoi": "eSTOI",
    "si_sdr": "SI-SDR (dB)",
    "snr": "SNR (dB)",
    "spk_sim": "Speaker similarity (GE2E cosine to the reference)",
    "dnsmos_ovrl": "DNSMOS OVRL",
    "pdnsmos_ovrl": "Personalized DNSMOS OVRL",
    "pdnsmos_bak": "Personalized DNSMOS BAK",
}
_DECIMALS = {"pesq": 2, "estoi": 3, "spk_sim": 3}  # dB and MOS columns: 2
# Every table that reports SI-SDRi reports these with it: SI-SDRi alone hid an eSTOI drop.
KEY_METRICS = ("si_sdri", "pesq", "estoi")
# Cell of a model whose summary exists but lacks the metric ("–" means no such model/setting).
NOT_SCORED = "n.s."


@dataclass(frozen=True)
class ScoreEntry:
    """One summary.yaml: the mean metrics of one model on one speaker's test set."""

    method: str
    size: Optional[str]  # None for the unprocessed mixtures
    setting: str  # "zsl", "fsl_<d>s" or "unprocessed"
    speaker: str
    means: Dict[str, float]
    num_params: Optional[int]
    path: Path


@dataclass(frozen=True)
class Aggregate:
    """Mean and std over target speakers of their per-speaker means."""

    mean: float
    std: float
    num_speakers: int


def clean_seconds(setting: str) -> Optional[float]:
    """Seconds of clean speech a setting used: 0 for "zsl", d for "fsl_<d>s", None otherwise."""
    if setting == ZERO_SHOT:
        return 0.0
    match = _FEW_SHOT.match(setting)
    return float(match.group(1)) if match else None


def setting_title(setting: str) -> str:
    seconds = clean_seconds(setting)
    return "Zero-shot" if seconds == 0.0 else f"Few-shot {seconds:g} s"


def load_summary(path: Path) -> Tuple[Dict[str, float], Optional[int]]:
    """Means per column and the parameter count (if any) of one summary.yaml."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict) or not isinstance(data.get("metrics"), dict):
        raise ValueError(f"{path}: expected a score summary with a 'metrics' mapping")
    means = {}
    for col, stats in data["metrics"].items():
        if not isinstance(stats, dict) or "mean" not in stats:
            raise ValueError(f"{path}: metrics.{col} has no 'mean'")
        means[col] = float(stats["mean"])
    num_params = data.get("num_params")
    return means, (int(num_params) if num_params is not None else None)


def collect(exp_dir: Path) -> List[ScoreEntry]:
    """Find every summary that follows the convention under ``exp_dir``.

    Summaries in directories that look like the convention but break it (no size in the
    model directory, an unknown setting) are skipped with a warning naming the path.
    """
    exp_dir = Path(exp_dir)
    if not exp_dir.is_dir():
        raise FileNotFoundError(f"experiment directory not found: {exp_dir}")
    entries = []
    for path in sorted(exp_dir.glob(f"{UNPROCESSED}/*/score/summary.yaml")):
        means, params = load_summary(path)
        entries.append(ScoreEntry(UNPROCESSED, None, UNPROCESSED, path.parts[-3], means, params, path))
    for path in sorted(exp_dir.glob("*/*/*/score/summary.yaml")):
        model_dir, setting, speaker = path.parts[-5:-2]
        if model_dir == INTERFERER:
            continue  # its own condition: collect(exp_dir / INTERFERER)
        method, _, size = model_dir.rpartition("_")
        if not method or not size:
            logger.warning("skipping %s: '%s' is not <method>_<size>", path, model_dir)
            continue
        if clean_seconds(setting) is None:
            logger.warning("skipping %s: setting '%s' is neither 'zsl' nor 'fsl_<d>s'", path, setting)
            continue
        means, params = load_summary(path)
        entries.append(ScoreEntry(method, size, setting, speaker, means, params, path))
    logger.info("found %d score summaries under %s", len(entries), exp_dir)
    return entries


GroupKey = Tuple[str, Optional[str], str]  # (method, size, setting)


def aggregate(entries: Sequence[ScoreEntry], column: str) -> Dict[GroupKey, Aggregate]:
    """Mean ± population std over speakers of ``column``, per (method, size, setting)."""
    values: Dict[GroupKey, List[float]] = {}
    for e in entries:
        if column in e.means:
            values.setdefault((e.method, e.size, e.setting), []).append(e.means[column])
    return {k: Aggregate(float(np.mean(v)), float(np.std(v)), len(v)) for k, v in values.items()}


def model_params(entries: Sequence[ScoreEntry]) -> Dict[Tuple[str, str], int]:
    """Parameter count per (method, size), where any of its summaries records one."""
    params: Dict[Tuple[str, str], int] = {}
    for e in entries:
        if e.size is not None and e.num_params is not None:
            params[(e.method, e.size)] = max(e.num_params, params.get((e.method, e.size), 0))
    return params


def settings_of(entries: Sequence[ScoreEntry]) -> List[str]:
    """Model settings present, zero-shot first, then few-shot by clean seconds."""
    found = {e.setting for e in entries if e.setting != UNPROCESSED}
    return sorted(found, key=clean_seconds) or [ZERO_SHOT]


def models_of(entries: Sequence[ScoreEntry]) -> List[Tuple[str, str]]:
    """(method, size) pairs: methods alphabetically, sizes by parameter count, then name."""
    params = model_params(entries)
    pairs = {(e.method, e.size) for e in entries if e.size is not None}
    return sorted(pairs, key=lambda p: (p[0], params.get(p, math.inf), p[1]))


def format_params(n: Optional[int]) -> str:
    if n is None:
        return "–"
    return f"{n / 1e6:.2f} M" if n >= 1e6 else f"{n / 1e3:.1f} k"


def format_value(value: float, column: str, signed: bool = False) -> str:
    """``value`` with the column's decimals (PESQ 2, eSTOI 3, dB 2); ``signed`` adds a + sign."""
    digits = _DECIMALS.get(column, 2)
    return f"{value:{'+' if signed else ''}.{digits}f}"


def unscored(columns: Sequence[str], means: Sequence[Dict[str, float]]) -> List[str]:
    """Those of ``columns`` that none of the summaries' ``means`` holds."""
    return [c for c in columns if not any(c in m for m in means)]


def not_scored_note(columns: Sequence[str]) -> str:
    """One sentence saying which metrics were not scored at all (empty when none)."""
    if not columns:
        return ""
    titles = ", ".join(METRIC_TITLES[c] for c in columns)
    return (f"Not scored: {titles} (no score summary has {'them' if len(columns) > 1 else 'it'}; "
            "`espnet2_pse.bin.score` computes every metric unless `--metrics` leaves some out).")


def _cell(agg: Optional[Aggregate], column: str, num_speakers: int) -> str:
    if agg is None:
        return "–"
    text = f"{format_value(agg.mean, column)} ± {format_value(agg.std, column)}"
    # Flag means over fewer speakers than the others: they are not directly comparable.
    return text if agg.num_speakers == num_speakers else f"{text} (n={agg.num_speakers})"


def metric_table(entries: Sequence[ScoreEntry], column: str) -> str:
    """Markdown table of ``column``: rows (method, size) plus the unprocessed row, columns
    zero-shot and each few-shot duration; cells are mean ± std over target speakers."""
    groups = aggregate(entries, column)
    scored_groups = {(e.method, e.size, e.setting) for e in entries}
    settings = settings_of(entries)
    num_speakers = len({e.speaker for e in entries})
    params = model_params(entries)

    def cell(key: GroupKey) -> str:
        if key not in groups and key in scored_groups:
            return NOT_SCORED
        return _cell(groups.get(key), column, num_speakers)

    header = ["Method", "Size", "Params"] + [setting_title(s) for s in settings]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    if (UNPROCESSED, None, UNPROCESSED) in scored_groups:
        # The test audio is the same in every setting, so the mixture's score is the
        # reference point of each column.
        cells = [cell((UNPROCESSED, None, UNPROCESSED))] * len(settings)
        lines.append("| " + " | ".join([UNPROCESSED, "–", "–"] + cells) + " |")
    for method, size in models_of(entries):
        cells = [cell((method, size, s)) for s in settings]
        lines.append("| " + " | ".join([method, size, format_params(params.get((method, size)))] + cells) + " |")
    return "\n".join(lines)


def speaker_table(entries: Sequence[ScoreEntry], column: str) -> str:
    """Markdown table of ``column`` per target speaker: rows (method, size, setting)."""
    speakers = sorted({e.speaker for e in entries})
    by_key = {(e.method, e.size, e.setting, e.speaker): e.means for e in entries}

    def cell(means: Optional[Dict[str, float]]) -> str:
        if means is None:
            return "–"
        return format_value(means[column], column) if column in means else NOT_SCORED

    header = ["Method", "Size", "Setting"] + speakers
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    rows = [(UNPROCESSED, None, UNPROCESSED)] + [
        (m, z, s) for m, z in models_of(entries) for s in settings_of(entries)
    ]
    for method, size, setting in rows:
        values = [by_key.get((method, size, setting, spk)) for spk in speakers]
        if all(v is None for v in values):
            continue
        cells = [cell(v) for v in values]
        label = "–" if setting == UNPROCESSED else setting_title(setting)
        lines.append("| " + " | ".join([method, size or "–", label] + cells) + " |")
    return "\n".join(lines)


def metric_sections(entries: Sequence[ScoreEntry], heading: str) -> List[str]:
    """Markdown lines: one table per metric, then the per-speaker tables, under ``heading``
    ("##" or deeper) titles."""
    columns = [c for c in METRIC_TITLES if any(c in e.means for e in entries)]
    missing = unscored(KEY_METRICS, [e.means for e in entries])
    per_speaker = [c for c in KEY_METRICS if c in columns]
    parts = ["", not_scored_note(missing)] if missing else []
    for column in columns:
        parts += ["", f"{heading} {METRIC_TITLES[column]}", "", metric_table(entries, column)]
    if per_speaker:
        # One sub-table per metric: speakers are the columns, so combined cells would not fit.
        parts += ["", f"{heading} Per target speaker", "",
                  "Mean over each target speaker's test mixtures, for " + ", ".join(
                      METRIC_TITLES[c] for c in per_speaker) + "."]
        for column in per_speaker:
            parts += ["", f"{heading}# {METRIC_TITLES[column]}", "", speaker_table(entries, column)]
        if missing:
            parts += ["", not_scored_note(missing)]
    return parts


def render_markdown(
    entries: Sequence[ScoreEntry],
    exp_dir: str,
    plots: Sequence[Tuple[str, Optional[str], str]] = (),
    sections: Sequence[str] = (),
    interferer: Sequence[ScoreEntry] = (),
) -> str:
    """The whole RESULTS.md.

    Args:
        entries: the collected summaries.
        exp_dir: shown as the source of the numbers.
        plots: (title, PNG file name relative to RESULTS.md or None when not drawn, reason it
            was not drawn).
        sections: extra markdown lines placed before the plots (e.g. the speaker-encoder
            tables of :mod:`espnet2_pse.scoring.speaker_results`).
        interferer: the summaries of the interfering-talker condition (``<exp_dir>/interferer``).
    """
    speakers = sorted({e.speaker for e in entries})
    parts = [
        "# Results",
        "",
        f"Generated by `python -m espnet2_pse.bin.make_results` from {len(entries)} score summaries "
        f"under `{exp_dir}`.",
        "",
        f"Target speakers ({len(speakers)}): {', '.join(speakers)}.",
        "Each cell is the mean ± standard deviation over target speakers of the per-speaker mean over "
        "that speaker's test mixtures; `(n=k)` marks a mean over only k speakers. "
        "Zero-shot: no clean speech of the target speaker; few-shot d s: fine-tuned on d seconds of it. "
        "SI-SDRi and SNRi are improvements over the unprocessed mixture. "
        f"`–`: no such model or setting; `{NOT_SCORED}`: that model was scored without the metric.",
    ]
    parts += metric_sections(entries, "##")
    if interferer:
        parts += ["", "## Interfering talker", "",
                  "The same models on each target speaker's `test_interferer` set: the test references with "
                  "one utterance of another voice at U(0, 10) dB target-to-interferer ratio plus test-bank "
                  f"noise at U(0, 10) dB ({len(interferer)} score summaries under `{exp_dir}/{INTERFERER}`)."]
        parts += metric_sections(interferer, "###")
    parts += list(sections)
    if plots:
        parts += ["", "## Plots", ""]
        for title, name, reason in plots:
            parts += [f"![{title}]({name})" if name else f"- {title}: not drawn ({reason}).", ""]
    return "\n".join(parts).rstrip() + "\n"
