"""Parameters and MACs per second of audio of the recipe's speaker encoders and PSE models.

Rows: the distilled student (one embedding of ``--seconds`` of audio, per second), the
student as the refinement runs it (a W-second window every h seconds: MACs(W) / h), the
teacher (its classification head excluded: embeddings never use it) and every PSE model given
with ``--pse NAME=CONFIG`` (built from its training config; weights do not change the count).
The student's cost is also given as a percentage of each PSE model's (goal of issue 5: <= 2 %).
Counts come from espnet2_pse.spk.complexity (conv / linear / GRU / STFT / mel layers).

    python -m espnet2_pse.bin.spk_cost --student_config exp/spk_student/config.yaml \
        --teacher_config exp/spk_teacher/config.yaml --refine_config conf/tuning/refine.yaml \
        --pse conditioned_cpu=exp/conditioned_cpu/model/config.yaml --out exp/spk_eval/cost.yaml
"""

import argparse
import logging
import os
from pathlib import Path
from typing import Dict, List, Optional

import torch
import yaml

import espnet2_pse  # noqa: F401  (registers our classes before models are built)
from espnet2_pse.spk.complexity import count_macs, count_parameters

SAMPLE_RATE = 16000


def per_second(model: torch.nn.Module, forward, seconds: float) -> float:
    """MACs per second of audio of ``forward(x)`` on ``seconds`` of noise."""
    x = torch.randn(1, int(seconds * SAMPLE_RATE))
    model.eval()
    return count_macs(model, lambda: forward(x)) / seconds


def student_rows(config: str, refine: Dict, seconds: float) -> List[Dict]:
    from espnet2_pse.tasks.spk_distill import SpkDistillTask

    student = SpkDistillTask.build_student_from_file(config, None, "cpu")
    params = count_parameters(student)
    window, hop = refine["window_s"], refine["hop_s"]
    window_macs = count_macs(student, lambda: student(torch.randn(1, int(window * SAMPLE_RATE))))
    return [
        {"name": "student", "params": params, "mmac_per_s": per_second(student, student, seconds) / 1e6},
        {"name": f"student refinement (W={window:g} s, h={hop:g} s)", "params": params,
         "mmac_per_s": window_macs / hop / 1e6},
    ]


def teacher_row(config: str, seconds: float) -> Dict:
    from espnet2.tasks.spk import SpeakerTask

    teacher, _ = SpeakerTask.build_model_from_file(config, None, "cpu")
    params = count_parameters(teacher) - count_parameters(teacher.loss)
    macs = per_second(teacher, lambda x: teacher(x, None, extract_embd=True), seconds)
    return {"name": "teacher", "params": params, "mmac_per_s": macs / 1e6}


def pse_row(name: str, config: str, seconds: float, embed_dim: int) -> Dict:
    from espnet2_pse.tasks.pse import PSETask

    model, _ = PSETask.build_model_from_file(config, None, "cpu")
    additional = {"enroll_ref1": torch.randn(1, embed_dim)}
    macs = per_second(model, lambda x: model.forward_enhance(x, torch.tensor([x.size(1)]), additional), seconds)
    return {"name": name, "params": count_parameters(model), "mmac_per_s": macs / 1e6}


def cost(args: argparse.Namespace) -> Dict:
    refine = yaml.safe_load(Path(args.refine_config).read_text())
    rows = student_rows(args.student_config, refine, args.seconds)
    if args.teacher_config:
        rows.append(teacher_row(args.teacher_config, args.seconds))
    embed_dim = int(yaml.safe_load(Path(args.student_config).read_text())["student_conf"].get("embed_dim", 192))
    pses = []
    for item in args.pse:
        name, sep, config = item.partition("=")
        if not sep:
            raise SystemExit(f"spk_cost: --pse expects NAME=CONFIG, got '{item}'")
        pses.append(pse_row(name, config, args.seconds, embed_dim))
    rows += pses
    ratios = {
        p["name"]: {r["name"]: round(100.0 * r["mmac_per_s"] / p["mmac_per_s"], 3) for r in rows[:2]}
        for p in pses
    }
    for row in rows:
        row["mmac_per_s"] = round(row["mmac_per_s"], 3)
    return {"rows": rows, "student_percent_of_pse": ratios}


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--student_config", required=True, help="config.yaml of the distilled student")
    parser.add_argument("--teacher_config", default=None, help="config.yaml of the teacher (ESPnet spk)")
    parser.add_argument("--refine_config", required=True, help="refinement options (window_s, hop_s)")
    parser.add_argument("--pse", action="append", default=[], metavar="NAME=CONFIG", help="PSE model config")
    parser.add_argument("--seconds", type=float, default=4.0, help="audio length of the count")
    parser.add_argument("--out", type=Path, default=None, help="YAML output (else stdout only)")
    return parser


def main(cmd: Optional[List[str]] = None) -> Dict:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (spk_cost) %(message)s")
    result = cost(args)
    text = yaml.safe_dump(result, sort_keys=False)
    print(text, end="")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_name(f".{args.out.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, args.out)
    return result


if __name__ == "__main__":
    main()
