"""Collect score summaries into RESULTS.md (markdown tables) and PNG plots.

Usage:
    python -m espnet2_pse.bin.make_results --exp_dir exp --out exp/RESULTS.md

Directory convention (each ``summary.yaml`` is written by ``python -m espnet2_pse.bin.score``
with ``--out_dir`` set to its ``score`` directory):

    <exp_dir>/<method>_<size>/<setting>/<speaker>/score/summary.yaml
    <exp_dir>/unprocessed/<speaker>/score/summary.yaml

- ``<method>``: any name, underscores allowed (``generalist``, ``pseudo_se``, ``cm_dp``).
- ``<size>``: the model size preset, without underscores; the model directory name is split at
  its LAST underscore (``pseudo_se_dp_small`` -> method ``pseudo_se_dp``, size ``small``).
- ``<setting>``: ``zsl`` (zero-shot: no clean speech of the speaker) or ``fsl_<d>s`` (few-shot:
  fine-tuned on d seconds of clean speech, d an integer or decimal: ``fsl_3s``, ``fsl_0.5s``).
  The few-shot baseline is method ``generalist`` with an ``fsl_<d>s`` setting.
- ``<speaker>``: the target speaker whose test set was scored.
- ``unprocessed``: the mixtures of each speaker's test set scored as they are (score without
  ``--inf_scp``); this gives the unprocessed row.
- ``<exp_dir>/interferer/`` holds the same layout for the interfering-talker test sets
  (``test_interferer``); it becomes the "Interfering talker" section.

Summaries that break the convention are skipped with a warning naming them. The parameter
count comes from the summaries (``score --model_file``); without it the parameter plot is
omitted and the table shows "–".

Outputs, next to ``--out``:
    RESULTS.md                    one table per metric (rows: method x size, plus the unprocessed
                                  row; columns: zero-shot and each few-shot duration; cells: mean
                                  ± std over target speakers), and per-speaker tables of SI-SDRi,
                                  PESQ-WB and eSTOI; a metric no summary holds is named as not
                                  scored, and "n.s." marks a model scored without it
    sisdri_vs_clean_seconds.png   SI-SDRi against seconds of clean speech, one panel per size
    sisdri_vs_params.png          SI-SDRi against parameter count, one line per method and setting

The speaker-encoder sections (conditioned generalist static vs refined, with SI-SDRi, PESQ-WB and
eSTOI in each cell; EER; cost) come from their own files: see
:mod:`espnet2_pse.scoring.speaker_results`.
"""

import argparse
import logging
import sys
from pathlib import Path

from espnet2_pse.scoring.files import atomic_write_text
from espnet2_pse.scoring.plots import plot_vs_clean_seconds, plot_vs_params
from espnet2_pse.scoring.results import INTERFERER, collect, render_markdown
from espnet2_pse.scoring.speaker_results import speaker_sections

logger = logging.getLogger("espnet2_pse.bin.make_results")

SECONDS_PNG = "sisdri_vs_clean_seconds.png"
PARAMS_PNG = "sisdri_vs_params.png"


def make_results(exp_dir: Path, out: Path) -> Path:
    """Write RESULTS.md and its plots for every summary under ``exp_dir``; return ``out``."""
    entries = collect(exp_dir)
    if not entries:
        raise FileNotFoundError(
            f"no score summaries under {exp_dir}: expected "
            "<exp_dir>/<method>_<size>/<setting>/<speaker>/score/summary.yaml "
            "or <exp_dir>/unprocessed/<speaker>/score/summary.yaml"
        )
    out = Path(out)
    plots = []
    drawn = plot_vs_clean_seconds(entries, out.parent / SECONDS_PNG)
    plots.append(("SI-SDRi vs seconds of clean speech", SECONDS_PNG if drawn else None, "no model summaries"))
    drawn = plot_vs_params(entries, out.parent / PARAMS_PNG)
    plots.append(
        (
            "SI-SDRi vs model parameters",
            PARAMS_PNG if drawn else None,
            "no summary records a parameter count; score with --model_file",
        )
    )
    interferer = collect(Path(exp_dir) / INTERFERER) if (Path(exp_dir) / INTERFERER).is_dir() else []
    atomic_write_text(out, render_markdown(entries, str(exp_dir), plots, speaker_sections(exp_dir), interferer))
    logger.info("wrote %s (%d summaries)", out, len(entries))
    return out


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Collect score summaries into RESULTS.md tables and PNG plots "
        "(directory convention: see the module docstring).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--exp_dir", type=Path, required=True, help="root of the scoring directories")
    parser.add_argument("--out", type=Path, required=True, help="RESULTS.md to write; the PNGs go beside it")
    parser.add_argument("--log_level", default="INFO", choices=("ERROR", "WARNING", "INFO", "DEBUG"))
    return parser


def main(cmd=None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=args.log_level, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    make_results(args.exp_dir, args.out)


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError) as err:
        logger.error("%s", err)
        sys.exit(1)
