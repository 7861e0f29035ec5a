"""Speaker-verification EER of a distilled student or its teacher on a data dir.

Trials come from ``--trials`` (``label utt1 utt2`` lines) or are built from the data dir's
utt2spk (balanced, seeded). ``--noise_scp`` evaluates the noisy condition: every utterance
gets a noise clip at an SNR drawn from U(snr_low, snr_high) dB, fixed by the seed and the
utterance key. ``--max_seconds`` embeds only the first seconds of each utterance (the short
windows the student sees at inference). Scores are cosine similarities.

Example:
    python -m espnet2_pse.bin.spk_eer --model_type student \
        --train_config exp/spk_student/config.yaml \
        --model_file exp/spk_student/valid.loss.best.pth \
        --data_dir data/generalist/valid --noise_scp data/noise/test/wav.scp \
        --output_file exp/spk_student/eer_noisy.yaml
"""

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Dict

import torch
import yaml

from espnet2_pse.data.audio import load_audio
from espnet2_pse.data.kaldi_dir import read_table
from espnet2_pse.data.mixing import add_noise_clip
from espnet2_pse.data.runtime import derive_rng
from espnet2_pse.spk.eer import build_trials, compute_eer, read_trials, write_trials
from espnet2_pse.spk.embedder import load_embedder


def evaluate(args: argparse.Namespace) -> Dict:
    data_dir = Path(args.data_dir)
    wav_scp = read_table(data_dir / "wav.scp")
    if args.trials:
        trials = read_trials(args.trials)
    else:
        utt2spk = read_table(data_dir / "utt2spk")
        trials = build_trials(utt2spk, args.max_trials_per_class, args.seed)
    utts = sorted({u for a, b, _ in trials for u in (a, b)})
    missing = [u for u in utts if u not in wav_scp]
    if missing:
        raise KeyError(f"{data_dir / 'wav.scp'} lacks trial utterances {missing[:5]}")
    noises = sorted(read_table(args.noise_scp).values()) if args.noise_scp else []
    embed = load_embedder(
        args.model_type, args.train_config, args.model_file, args.model_tag, args.device
    )

    embeddings = {}
    for i, utt in enumerate(utts, 1):
        speech = load_audio(wav_scp[utt], args.sample_rate)
        if args.max_seconds > 0:
            speech = speech[: int(args.max_seconds * args.sample_rate)]
        if noises:
            rng = derive_rng(args.seed, "spk_eer_noise", utt)
            speech = add_noise_clip(speech, noises, (args.snr_low, args.snr_high), rng, args.sample_rate)
        embeddings[utt] = embed(torch.from_numpy(speech)).float().cpu()
        if i % 50 == 0 or i == len(utts):
            logging.info(f"embedded {i}/{len(utts)} utterances")
    scores = [float(torch.dot(embeddings[a], embeddings[b])) for a, b, _ in trials]
    labels = [label for _, _, label in trials]
    result = {
        "eer": compute_eer(scores, labels),
        "n_target": int(sum(labels)),
        "n_nontarget": int(len(labels) - sum(labels)),
        "model_type": args.model_type,
        "model": args.model_tag or str(args.model_file),
        "data_dir": str(data_dir),
        "condition": "noisy" if noises else "clean",
        "snr_range_db": [args.snr_low, args.snr_high] if noises else None,
        "max_seconds": args.max_seconds,
    }
    if args.write_trials:
        write_trials(args.write_trials, trials)
    return result


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data_dir", required=True, help="Dir with wav.scp and utt2spk")
    parser.add_argument("--model_type", choices=("student", "teacher"), required=True)
    parser.add_argument("--train_config", default=None, help="config.yaml of the model")
    parser.add_argument("--model_file", default=None, help="checkpoint (.pth) of the model")
    parser.add_argument("--model_tag", default=None, help="pretrained teacher: resemblyzer (offline) or a model-zoo tag (network)")
    parser.add_argument("--trials", default=None, help="'label utt1 utt2' trial list")
    parser.add_argument("--write_trials", default=None, help="Save the trial list used here")
    parser.add_argument("--max_trials_per_class", type=int, default=1000)
    parser.add_argument("--noise_scp", default=None, help="Noise list for the noisy condition")
    parser.add_argument("--snr_low", type=float, default=0.0, help="dB")
    parser.add_argument("--snr_high", type=float, default=10.0, help="dB")
    parser.add_argument("--max_seconds", type=float, default=0.0,
                        help="Embed only the first seconds of each utterance (0: all)")
    parser.add_argument("--sample_rate", type=int, default=16000, help="Hz")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--output_file", default=None, help="YAML result (else stdout only)")
    parser.add_argument("--log_level", default="INFO")
    return parser


def main(cmd=None) -> Dict:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s: %(message)s")
    result = evaluate(args)
    text = yaml.safe_dump(result, sort_keys=False)
    sys.stdout.write(text)
    if args.output_file:
        out = Path(args.output_file)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out)
    return result


if __name__ == "__main__":
    main()
