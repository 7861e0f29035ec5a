"""Enrollment embeddings from the teacher: training tables and per-speaker enrollment clips.

``--pool NAME=DATA_DIR`` (repeatable): every utterance of DATA_DIR (clean audio from its
``spk1.scp``, speakers from ``utt2spk``) is embedded once; each key then gets the embedding of
*another* utterance of its speaker (the next one in sorted order), so a conditioned model
never sees its own target as enrollment. Writes ``<out_dir>/NAME/enroll_spk1.scp`` ("key
path.npy"), the ``enroll_ref1`` data of ``pse_train`` (type npy).

``--speaker_dir DIR`` (repeatable, a target speaker's dump dir): enrollment conditions of the
speaker, each a (D,) ``<out_dir>/speakers/<spk>/<condition>.npy``:
- ``clean``: the first ``--enroll_seconds`` of its clean few-shot speech (fsl_train);
- ``short``: the first ``--short_enroll_seconds`` of the same speech;
- ``noisy``: the clean clip plus a ``--noise_scp`` clip at ``--noisy_snr_db`` dB; for a user
  whose recordings are noisy (meta.yaml ``premixed: true``), the first seconds of those.
Conditions without audio (a user without clean speech) are left out. ``enroll.yaml`` in each
speaker's folder lists the conditions, their seconds and their cosine to ``clean``.

Example:
    python -m espnet2_pse.bin.spk_enroll --model_type teacher \
        --train_config exp/spk_teacher/config.yaml --model_file exp/spk_teacher/valid.eer.best.pth \
        --pool train=dump/generalist/train --speaker_dir dump/speakers/syn01 \
        --noise_scp data/noise/inject_val/wav.scp --out_dir exp/enroll
"""

import argparse
import logging
import os
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch
import yaml

from espnet2_pse.data.audio import load_audio
from espnet2_pse.data.kaldi_dir import read_table, write_table
from espnet2_pse.data.mixing import add_noise_clip
from espnet2_pse.data.runtime import derive_rng
from espnet2_pse.spk.embedder import Embedder, load_embedder

CONDITIONS = ("clean", "short", "noisy")


def save_npy(path: Path, array: np.ndarray) -> None:
    """Write ``array`` to ``path`` through a temporary name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.npy")
    np.save(tmp, np.asarray(array, dtype=np.float32))
    os.replace(tmp, path)


def enroll_pool(embed: Embedder, data_dir: Path, out_dir: Path, sample_rate: int) -> Path:
    """Per-key enrollment embeddings of ``data_dir`` (see the module docstring); returns the scp."""
    audio = read_table(data_dir / "spk1.scp")
    utt2spk = read_table(data_dir / "utt2spk")
    missing = sorted(set(audio) - set(utt2spk))
    if missing:
        raise KeyError(f"{data_dir / 'utt2spk'} lacks keys of spk1.scp: {missing[:5]}")
    spk2utts: Dict[str, List[str]] = {}
    for key in sorted(audio):
        spk2utts.setdefault(utt2spk[key], []).append(key)
    for spk, keys in spk2utts.items():
        if len(keys) == 1:
            logging.warning("%s: speaker %s has one utterance: it enrolls with itself", data_dir, spk)
    emb_dir = out_dir / "embeddings"
    for i, key in enumerate(sorted(audio), 1):
        target = emb_dir / f"{key}.npy"
        if not target.is_file():
            save_npy(target, embed(torch.from_numpy(load_audio(audio[key], sample_rate))).cpu().numpy())
        if i % 50 == 0 or i == len(audio):
            logging.info("%s: embedded %d/%d utterances", data_dir, i, len(audio))
    enroll = {}
    for keys in spk2utts.values():
        for i, key in enumerate(keys):
            enroll[key] = str((emb_dir / f"{keys[(i + 1) % len(keys)]}.npy").absolute())
    write_table(out_dir / "enroll_spk1.scp", enroll)
    return out_dir / "enroll_spk1.scp"


def first_seconds(wav_scp: Path, seconds: float, sample_rate: int) -> np.ndarray:
    """The scp's audio in key order, concatenated and cut to ``seconds``."""
    need = int(round(seconds * sample_rate))
    pieces, have = [], 0
    for _, path in sorted(read_table(wav_scp).items()):
        pieces.append(load_audio(path, sample_rate))
        have += len(pieces[-1])
        if have >= need:
            break
    if not pieces:
        raise ValueError(f"{wav_scp}: no audio to enroll with")
    clip = np.concatenate(pieces)[:need]
    if len(clip) < need:
        logging.warning("%s: only %.2f s of audio for a %.2f-s enrollment", wav_scp, len(clip) / sample_rate, seconds)
    return clip


def enrollment_clips(speaker_dir: Path, args: argparse.Namespace, noises: List[str]) -> Dict[str, np.ndarray]:
    """Audio of every enrollment condition the speaker's data allows."""
    meta = yaml.safe_load((speaker_dir / "meta.yaml").read_text())
    clean_scp = speaker_dir / "fsl_train" / "wav.scp"
    clips = {}
    if clean_scp.is_file() and read_table(clean_scp):
        clips["clean"] = first_seconds(clean_scp, args.enroll_seconds, args.sample_rate)
        clips["short"] = clips["clean"][: int(round(args.short_enroll_seconds * args.sample_rate))]
    if meta.get("premixed"):
        clips["noisy"] = first_seconds(speaker_dir / "pretrain" / "wav.scp", args.enroll_seconds, args.sample_rate)
    elif "clean" in clips and noises:
        rng = derive_rng(args.seed, "enroll_noise", speaker_dir.name)
        snr = (args.noisy_snr_db, args.noisy_snr_db)
        clips["noisy"] = add_noise_clip(clips["clean"], noises, snr, rng, args.sample_rate)
    return clips


def enroll_speaker(embed: Embedder, speaker_dir: Path, out_dir: Path, args, noises: List[str]) -> Dict:
    clips = enrollment_clips(speaker_dir, args, noises)
    if not clips:
        raise ValueError(f"{speaker_dir}: no clean (fsl_train) or noisy (premixed pretrain) audio to enroll with")
    embeddings = {name: embed(torch.from_numpy(clip)).cpu().numpy() for name, clip in clips.items()}
    for name, embedding in embeddings.items():
        save_npy(out_dir / f"{name}.npy", embedding)
    summary = {
        name: {
            "seconds": round(len(clips[name]) / args.sample_rate, 3),
            "cosine_to_clean": round(float(embeddings[name] @ embeddings["clean"]), 4) if "clean" in embeddings else None,
        }
        for name in embeddings
    }
    tmp = out_dir / ".enroll.yaml.tmp"
    tmp.write_text(yaml.safe_dump(summary, sort_keys=False))
    os.replace(tmp, out_dir / "enroll.yaml")
    return summary


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_type", choices=("teacher", "student"), default="teacher")
    parser.add_argument("--train_config", default=None, help="config.yaml of the speaker model")
    parser.add_argument("--model_file", default=None, help="checkpoint (.pth) of the speaker model")
    parser.add_argument("--model_tag", default=None, help="pretrained teacher: resemblyzer (offline) or a model-zoo tag (network or cache)")
    parser.add_argument("--out_dir", type=Path, required=True)
    parser.add_argument("--pool", action="append", default=[], metavar="NAME=DATA_DIR",
                        help="data dir whose keys get enrollment embeddings (repeatable)")
    parser.add_argument("--speaker_dir", action="append", type=Path, default=[],
                        help="a target speaker's dump dir: enrollment conditions (repeatable)")
    parser.add_argument("--enroll_seconds", type=float, default=5.0, help="clean and noisy enrollment length")
    parser.add_argument("--short_enroll_seconds", type=float, default=1.5, help="short enrollment length")
    parser.add_argument("--noise_scp", default=None, help="noise for the noisy enrollment")
    parser.add_argument("--noisy_snr_db", type=float, default=0.0, help="SNR of the noisy enrollment (dB)")
    parser.add_argument("--sample_rate", type=int, default=16000, help="Hz")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (spk_enroll) %(message)s")
    pools = []
    for item in args.pool:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"spk_enroll: --pool expects NAME=DATA_DIR, got '{item}'")
        pools.append((name, Path(path)))
    if not pools and not args.speaker_dir:
        raise SystemExit("spk_enroll: nothing to do: give --pool and/or --speaker_dir")
    embed = load_embedder(args.model_type, args.train_config, args.model_file, args.model_tag, args.device)
    for name, data_dir in pools:
        scp = enroll_pool(embed, data_dir, args.out_dir / name, args.sample_rate)
        logging.info("wrote %s", scp)
    noises = sorted(read_table(args.noise_scp).values()) if args.noise_scp else []
    for speaker_dir in args.speaker_dir:
        summary = enroll_speaker(embed, speaker_dir, args.out_dir / "speakers" / speaker_dir.name, args, noises)
        logging.info("%s: %s", speaker_dir.name, summary)


if __name__ == "__main__":
    main()
