"""Cost of the speaker encoders against the PSE models they serve.

Parameters and MACs per second of 16 kHz audio (hook-based count over conv / linear / GRU /
STFT / mel layers, espnet2_pse.spk.complexity) for:
- the distilled student (TinySpeakerEncoder, default config);
- on-the-fly refinement: the student embedding a W-second window every h seconds costs
  student MACs(W) / h per second of audio;
- teachers: ESPnet's VoxCeleb ECAPA-TDNN (C=1024, 80 mels) and the in-recipe CPU teacher
  (conf/tuning/train_spk_teacher.yaml);
- PSE models: ConvTasNetSkip at the paper's sizes (conv encoder/decoder N=512, L=16), the
  default CPU recipe's model (N=64, L=32, stride 16, preset "cpu") and the conditioned
  PConvTasNet (FiLM).
The table ends with the student's cost as a percentage of each PSE model's (goal: <= 2 %).

    python bench/bench_spk.py [--markdown out.md]
"""

import argparse
import os
from pathlib import Path
from typing import List, Tuple

import torch
import yaml

import espnet2_pse  # noqa: F401  (registers the separators)
from espnet2.enh.decoder.conv_decoder import ConvDecoder
from espnet2.enh.encoder.conv_encoder import ConvEncoder
from espnet2_pse.separators.conv_tasnet_skip import ConvTasNetSkip
from espnet2_pse.separators.pconv_tasnet import PConvTasNet
from espnet2_pse.spk.complexity import count_macs, count_parameters, macs_per_second
from espnet2_pse.spk.teacher import speaker_model_from_config
from espnet2_pse.spk.tiny_encoder import TinySpeakerEncoder

FS = 16000
SECONDS = 4.0
RECIPE_TEACHER = (
    Path(__file__).resolve().parents[1] / "egs2/pse_ssl/pse1/conf/tuning/train_spk_teacher.yaml"
)
VOXCELEB_ECAPA = dict(
    frontend="melspec_torch",
    frontend_conf=dict(n_mels=80, log=True, normalize="mn"),
    encoder="ecapa_tdnn",
    encoder_conf=dict(ndim=1024, model_scale=8, output_size=1536),
    pooling="chn_attn_stat",
    projector="rawnet3",
    projector_conf=dict(output_size=192),
    loss="aamsoftmax",
    spk_num=1211,
)
SPEAKER_MODEL_KEYS = ("frontend", "frontend_conf", "specaug", "specaug_conf", "normalize",
                      "normalize_conf", "encoder", "encoder_conf", "pooling", "pooling_conf",
                      "projector", "projector_conf", "loss", "loss_conf", "spk_num")
REFINEMENT = ((2.0, 0.5), (2.0, 1.0), (3.0, 1.0))


class PSEModel(torch.nn.Module):
    """Conv encoder -> separator -> conv decoder, the enhancement path of an ESPnet model."""

    def __init__(self, separator, channels=512, kernel=16, stride=8):
        super().__init__()
        self.encoder = ConvEncoder(channels, kernel, stride)
        self.separator = separator
        self.decoder = ConvDecoder(channels, kernel, stride)

    def forward(self, x):
        lengths = torch.full((x.size(0),), x.size(1))
        feats, flens = self.encoder(x, lengths)
        additional = {"enroll_ref1": torch.randn(x.size(0), 192)}
        masked, flens, _ = self.separator(feats, flens, additional)
        return self.decoder(masked[0], lengths)


def speaker_model_macs(model) -> float:
    model.eval()
    x = torch.randn(1, int(SECONDS * FS))
    return count_macs(model, lambda: model(x, None, extract_embd=True)) / SECONDS


def teacher_rows() -> List[Tuple[str, int, float]]:
    rows = []
    configs = [("teacher ECAPA-TDNN C=1024 (VoxCeleb)", VOXCELEB_ECAPA)]
    if RECIPE_TEACHER.is_file():
        conf = yaml.safe_load(RECIPE_TEACHER.read_text())
        conf = {k: v for k, v in conf.items() if k in SPEAKER_MODEL_KEYS}
        conf.setdefault("spk_num", 100)
        configs.append((f"teacher in-recipe ({RECIPE_TEACHER.name})", conf))
    for name, conf in configs:
        model = speaker_model_from_config(conf)
        # The classification head is a training-only loss; embeddings never use it.
        params = count_parameters(model) - count_parameters(model.loss)
        rows.append((name, params, speaker_model_macs(model)))
    return rows


def pse_rows() -> List[Tuple[str, int, float]]:
    rows = []
    for preset in ("tiny", "small", "medium", "large"):
        model = PSEModel(ConvTasNetSkip(512, preset=preset))
        rows.append((f"PSE ConvTasNetSkip {preset}", count_parameters(model),
                     macs_per_second(model, model, SECONDS, FS)))
    # The default CPU recipe's model (conf/model/cpu.yaml): 64 filters of 32 samples, stride 16.
    model = PSEModel(ConvTasNetSkip(64, preset="cpu"), channels=64, kernel=32, stride=16)
    rows.append(("PSE ConvTasNetSkip cpu (N=64, L=32)", count_parameters(model),
                 macs_per_second(model, model, SECONDS, FS)))
    model = PSEModel(PConvTasNet(512, preset="small", fusion="film"))
    rows.append(("PSE PConvTasNet small (FiLM)", count_parameters(model),
                 macs_per_second(model, model, SECONDS, FS)))
    return rows


def main(cmd=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--markdown", default=None, help="Also write the tables to this file")
    args = parser.parse_args(cmd)
    torch.manual_seed(0)

    student = TinySpeakerEncoder().eval()
    student_macs = macs_per_second(student, student, SECONDS, FS)
    rows = [("student TinySpeakerEncoder", count_parameters(student), student_macs)]
    for window, hop in REFINEMENT:
        macs = count_macs(student, lambda: student(torch.randn(1, int(window * FS)))) / hop
        name = f"student refinement W={window:g}s h={hop:g}s"
        rows.append((name, count_parameters(student), macs))
    rows += teacher_rows()
    pses = pse_rows()
    rows += pses

    lines = ["| model | params | MMAC/s |", "|---|---:|---:|"]
    lines += [f"| {n} | {p:,} | {m / 1e6:,.1f} |" for n, p, m in rows]
    lines += ["", "| PSE model | student % | refinement W=2s h=0.5s % | refinement W=2s h=1s % |",
              "|---|---:|---:|---:|"]
    refine = {f"{w:g}/{h:g}": m for (n, _, m), (w, h) in zip(rows[1:4], REFINEMENT)}
    for name, _, pse_macs in pses:
        shares = [student_macs, refine["2/0.5"], refine["2/1"]]
        cells = " | ".join(f"{100 * m / pse_macs:.2f}" for m in shares)
        lines.append(f"| {name} | {cells} |")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.markdown:
        out = Path(args.markdown)
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out)


if __name__ == "__main__":
    main()
