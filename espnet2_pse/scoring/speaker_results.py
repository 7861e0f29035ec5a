"""RESULTS.md sections of the speaker-encoder experiments (issue 5).

Read from the experiment directory (all optional; a section is left out without its files):
    spk_eval/<model>_<condition>.yaml       espnet2_pse.bin.spk_eer outputs (teacher_clean,
                                            student_noisy, student_2.0s_clean, ...)
    spk_eval/cost.yaml                      espnet2_pse.bin.spk_cost output
    conditioned_<size>/enroll/<enroll>_<mode>/<speaker>/score/summary.yaml
                                            conditioned generalist, enrollment condition
                                            (clean, short, noisy) x mode: static (one pass),
                                            hoploop (the refinement's hop loop with e_0 alone),
                                            refined, or refined_input (the student embeds the
                                            mixture: input-side ablation)
    conditioned_<size>/enroll/<enroll>_refined/<speaker>/enhanced/refinement.yaml
                                            (the conditioned table shows SI-SDRi, PESQ-WB and
                                            eSTOI side by side, as far as they were scored)
    generalist_<size>/zsl/<speaker>/score/summary.yaml   the unconditioned reference
"""

import re
from pathlib import Path
from statistics import mean
from typing import Dict, List, Optional, Tuple

import yaml

from espnet2_pse.scoring.results import (
    KEY_METRICS,
    METRIC_TITLES,
    NOT_SCORED,
    format_value,
    load_summary,
    not_scored_note,
    unscored,
)

ENROLL_ORDER = ("clean", "short", "noisy")
_EER_FILE = re.compile(r"^(teacher|student)(?:_(\d+(?:\.\d+)?)s)?_(clean|noisy)$")
MODES = ("static", "hoploop", "refined", "refined_input")
_CONDITIONED = re.compile(rf"^(.+?)_({'|'.join(MODES)})$")


def _read_yaml(path: Path) -> Dict:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML: {err}") from None


def eer_table(exp_dir: Path) -> Optional[str]:
    """Speaker-verification EER (%) of teacher and student, clean and noisy."""
    cells: Dict[Tuple[str, str], Dict[str, Dict]] = {}
    for path in sorted((exp_dir / "spk_eval").glob("*.yaml")):
        match = _EER_FILE.match(path.stem)
        if not match:
            continue
        model, seconds, condition = match.groups()
        window = f"first {float(seconds):g} s" if seconds else "whole utterance"
        cells.setdefault((model, window), {})[condition] = _read_yaml(path)
    if not cells:
        return None
    lines = ["| model | embedded audio | EER clean (%) | EER noisy (%) | trials (target / non-target) |",
             "|---|---|---:|---:|---|"]
    for (model, window), by_condition in sorted(cells.items(), key=lambda kv: (kv[0][0] != "teacher", kv[0][1])):
        eers = [f"{100 * by_condition[c]['eer']:.1f}" if c in by_condition else "–" for c in ("clean", "noisy")]
        first = next(iter(by_condition.values()))
        lines.append(f"| {model} | {window} | {eers[0]} | {eers[1]} | {first['n_target']} / {first['n_nontarget']} |")
    return "\n".join(lines)


def cost_table(exp_dir: Path) -> Optional[str]:
    path = exp_dir / "spk_eval" / "cost.yaml"
    if not path.is_file():
        return None
    data = _read_yaml(path)
    lines = ["| model | params | MMAC / s of audio |", "|---|---:|---:|"]
    lines += [f"| {r['name']} | {r['params']:,} | {r['mmac_per_s']:,.1f} |" for r in data.get("rows", [])]
    for pse, shares in data.get("student_percent_of_pse", {}).items():
        text = ", ".join(f"{name} {share:.2f} %" for name, share in shares.items())
        lines += ["", f"Share of {pse}'s cost: {text}."]
    return "\n".join(lines)


def _means(path: Path) -> Dict[str, float]:
    return load_summary(path)[0]


def _metric_cell(summaries: Optional[List[Dict[str, float]]], metrics: Tuple[str, ...]) -> str:
    """Cell "SI-SDRi / PESQ-WB / eSTOI": each the mean over the summaries that hold it."""
    if not summaries:
        return "–"
    parts = []
    for column in metrics:
        values = [m[column] for m in summaries if column in m]
        parts.append(format_value(mean(values), column) if values else NOT_SCORED)
    return " / ".join(parts)


def _delta_cell(after: Optional[List[Dict[str, float]]], before: Optional[List[Dict[str, float]]],
                metrics: Tuple[str, ...]) -> str:
    """Per metric: mean of ``after`` minus mean of ``before``, signed."""
    if not after or not before:
        return "–"
    parts = []
    for column in metrics:
        a = [m[column] for m in after if column in m]
        b = [m[column] for m in before if column in m]
        parts.append(format_value(mean(a) - mean(b), column, signed=True) if a and b else NOT_SCORED)
    return " / ".join(parts)


def conditioned_table(exp_dir: Path) -> Optional[Tuple[str, Tuple[str, ...]]]:
    """The conditioned generalists, static vs refined, and the metrics its cells show.

    Cells are "SI-SDRi / PESQ-WB / eSTOI" means over speakers (metrics no summary holds are
    left out; the caller says so; no metric at all gives an empty table). None when there is no
    conditioned summary.
    """
    scores: Dict[Tuple[str, str, str], List[Dict[str, float]]] = {}
    accept: Dict[Tuple[str, str], List[float]] = {}
    for path in sorted(exp_dir.glob("conditioned_*/enroll/*/*/score/summary.yaml")):
        size = path.parts[-6].split("_", 1)[1]
        match = _CONDITIONED.match(path.parts[-4])
        if not match:
            continue
        enroll, mode = match.groups()
        scores.setdefault((size, enroll, mode), []).append(_means(path))
        stats = path.parent.parent / "enhanced" / "refinement.yaml"
        if mode == "refined" and stats.is_file():
            accept.setdefault((size, enroll), []).append(_read_yaml(stats)["overall"]["accept_rate"])
    if not scores:
        return None
    sizes = sorted({k[0] for k in scores})
    references = {size: [_means(p) for p in sorted(exp_dir.glob(f"generalist_{size}/zsl/*/score/summary.yaml"))]
                  for size in sizes}
    everything = [m for group in scores.values() for m in group] + [m for r in references.values() for m in r]
    missing = unscored(KEY_METRICS, everything)
    metrics = tuple(c for c in KEY_METRICS if c not in missing)
    if not metrics:
        return "", metrics
    enrolls = sorted({k[1] for k in scores}, key=lambda e: (ENROLL_ORDER + (e,)).index(e))
    lines = ["| size | enrollment | static | hop loop, e_0 only | refined | refined from the input "
             "| refined − hop loop | updates accepted |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for size in sizes:
        if references[size]:
            lines.append(f"| {size} | none (unconditioned generalist) | {_metric_cell(references[size], metrics)} "
                         "| – | – | – | – | – |")
        for enroll in enrolls:
            values = {mode: scores.get((size, enroll, mode)) for mode in MODES}
            cells = [_metric_cell(values[m], metrics) for m in MODES]
            delta = _delta_cell(values["refined"], values["hoploop"], metrics)
            rate = accept.get((size, enroll))
            rate_cell = f"{100 * mean(rate):.0f} %" if rate else "–"
            lines.append(f"| {size} | {enroll} | {' | '.join(cells)} | {delta} | {rate_cell} |")
    return "\n".join(lines), metrics


def _conditioned_section(exp_dir: Path) -> List[str]:
    conditioned = conditioned_table(exp_dir)
    if conditioned is None:
        return []
    table, metrics = conditioned
    parts = ["", "## Speaker-conditioned generalist: static vs refined embedding"]
    if table:
        parts += ["", f"Each cell: {' / '.join(METRIC_TITLES[c] for c in metrics)}, the mean over target "
                  "speakers of the per-speaker mean over the same test mixtures as above (refined − hop loop: "
                  "the difference of each). "
                  "Enrollment embeddings come from the teacher: clean (the first seconds of the speaker's "
                  "few-shot speech), short (its first part) and noisy (the clean clip plus noise). Static: "
                  "one pass over each mixture. Hop loop, e_0 only: the refinement's causal hop-by-hop "
                  "processing with the enrollment embedding kept (alpha 1). Refined: the same loop where "
                  "the distilled student re-embeds the enhanced output (RefinementOptions in the refine "
                  "config); updates far from the enrollment are skipped, so refined − hop loop is the "
                  "effect of the refined embedding alone. Refined from the input: the student embeds the "
                  "mixture instead (ablation).", "", table]
    missing = [c for c in KEY_METRICS if c not in metrics]
    if missing:
        parts += ["", not_scored_note(missing)]
    return parts


def speaker_sections(exp_dir: Path) -> List[str]:
    """Markdown lines of every section whose files exist (empty when none)."""
    exp_dir = Path(exp_dir)
    parts = _conditioned_section(exp_dir)
    eer = eer_table(exp_dir)
    if eer:
        parts += ["", "## Speaker verification (EER)", "",
                  "Held-out speakers (validation and target roles; never in the teacher's or student's "
                  "training). Noisy: test-bank noise at U(0, 10) dB.", "", eer]
    cost = cost_table(exp_dir)
    if cost:
        parts += ["", "## Speaker encoder cost", "", cost]
    return parts
