#!/usr/bin/env python3
"""Stage 1: prepare the data root (corpus, splits, fixed test/validation mixtures, users).

Examples:
    # embedded synthetic corpus (offline default)
    python -m espnet2_pse.bin.prepare_data --out data
    # real recorded voices and sound effects from Debian packages (make -C tools fetches them)
    python -m espnet2_pse.bin.prepare_data --out data --corpus debian_real
    # the paper's corpora
    python -m espnet2_pse.bin.prepare_data --out data --corpus librispeech \\
        --librispeech /corpora/LibriSpeech --fsd50k /corpora/FSD50K --musan /corpora/musan
    # add a person's own noisy recordings (and a little clean speech) as a target speaker;
    # the noise banks and generalist speakers come from --base_corpus (default: embedded)
    python -m espnet2_pse.bin.prepare_data --out data --corpus user --user_name alice \\
        --user_noisy_dir alice/noisy --user_clean_dir alice/clean
"""

import argparse
import logging
import sys
from pathlib import Path
from typing import List, Optional

import torch

from espnet2_pse.data.debian_real import DebianConfig
from espnet2_pse.data.embedded import EmbeddedConfig
from espnet2_pse.data.layout import LayoutConfig
from espnet2_pse.data.prepare import prepare_corpus
from espnet2_pse.data.real_corpora import PAPER_TARGET_SPEAKERS, PAPER_VALIDATION_SPEAKERS, RealConfig
from espnet2_pse.data.user import UserConfig, prepare_user

# Defaults that differ per corpus: the embedded corpus is a scaled-down version of the paper's.
_CORPUS_DEFAULTS = {
    "embedded": {"split_scale": 0.25, "test_mixtures": 20, "val_mixtures": 16},
    # 60 s test / 60 s val / 120 s few-shot / 60 s preval per voice; about 33 min stay for pretrain.
    "debian_real": {"split_scale": 2.0, "test_mixtures": 30, "val_mixtures": 32},
    "librispeech": {"split_scale": 1.0, "test_mixtures": 100, "val_mixtures": 64},
}


def _bool(value: str) -> bool:
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def _ids(value: str) -> List[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Prepare Kaldi-style data dirs for personalized speech enhancement (stage 1).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", default="data", help="data root to create")
    p.add_argument(
        "--corpus",
        choices=sorted(_CORPUS_DEFAULTS) + ["user"],
        default="embedded",
        help="'user': --base_corpus plus the recordings of --user_noisy_dir",
    )
    p.add_argument(
        "--base_corpus",
        choices=sorted(_CORPUS_DEFAULTS),
        default="embedded",
        help="with --corpus user: where the noise banks and generalist speakers come from",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--nj", type=int, default=2, help="parallel worker processes")
    g = p.add_argument_group("splits and fixed sets (defaults depend on --corpus)")
    g.add_argument(
        "--split_scale",
        type=float,
        default=None,
        help="scales the paper's 30/30/60/30 s splits (embedded: 0.25, librispeech: 1.0)",
    )
    g.add_argument("--test_mixtures", type=int, default=None, help="4 s test mixtures per target speaker")
    g.add_argument("--val_mixtures", type=int, default=None, help="mixtures per fixed validation set")
    g.add_argument("--mixture_seconds", type=float, default=4.0)
    g.add_argument("--interferer_test", type=_bool, default=False,
                   help="also write speakers/<target>/test_interferer: the test references with an interfering "
                   "talker (a validation-role voice) at U(0, 10) dB TIR plus test-bank noise at U(0, 10) dB")
    g = p.add_argument_group("embedded corpus")
    g.add_argument("--num_speakers", type=int, default=16)
    g.add_argument("--num_target", type=int, default=4)
    g.add_argument("--num_validation", type=int, default=4)
    g.add_argument("--minutes_per_speaker", type=float, default=1.75)
    g.add_argument("--noise_files_per_family", type=int, default=6)
    g = p.add_argument_group("debian_real corpus (packages listed in espnet2_pse/data/debian_sources.py)")
    g.add_argument("--debian_dir", default="",
                   help="where the packages are unpacked (default: $ESPNET2_PSE_DEBIAN_DIR or "
                   "~/.cache/espnet2_pse/debian, as espnet2_pse.bin.fetch_debian writes it)")
    g.add_argument("--debian_targets", type=_ids, default=[],
                   help="comma-separated target voices (default: all, fillets_cs_m,fillets_cs_v,...)")
    g.add_argument("--debian_target_minutes", type=float, default=0.0, help="minutes per target voice (0: all)")
    g.add_argument("--debian_other_minutes", type=float, default=0.0,
                   help="minutes per validation/generalist voice (0: all)")
    g.add_argument("--debian_noise_minutes", type=float, default=0.0, help="minutes per noise package (0: all)")
    g = p.add_argument_group("real corpora (librispeech)")
    g.add_argument("--librispeech", default="", help="LibriSpeech root (holding LibriSpeech/ or the subsets)")
    g.add_argument("--fsd50k", default="", help="FSD50K root (FSD50K.dev_audio/, FSD50K.ground_truth/, ...)")
    g.add_argument("--musan", default="", help="MUSAN root (holding musan/ or noise/)")
    g.add_argument(
        "--librispeech_subsets",
        type=_ids,
        default=["train-clean-100"],
        help="comma-separated, e.g. train-clean-100,train-clean-360",
    )
    g.add_argument(
        "--target_speakers", type=_ids, default=list(PAPER_TARGET_SPEAKERS), help="comma-separated ids"
    )
    g.add_argument(
        "--validation_speakers",
        type=_ids,
        default=list(PAPER_VALIDATION_SPEAKERS),
        help="comma-separated ids",
    )
    g.add_argument("--musan_val_files", type=int, default=60)
    g.add_argument("--download", type=_bool, default=False, help="fetch missing corpora (needs the internet)")
    g.add_argument("--download_dir", default="downloads")
    g = p.add_argument_group("bring your own user")
    g.add_argument("--user_noisy_dir", default="", help="folder of one person's noisy recordings")
    g.add_argument("--user_clean_dir", default="",
                   help="folder with a little clean speech (alone: a user without noisy recordings, for few-shot "
                   "training straight from a generalist)")
    g.add_argument("--user_test_dir", default="", help="optional folder with noisy/ and clean/ paired files")
    g.add_argument("--user_name", default="user")
    g.add_argument("--user_segment_seconds", type=float, default=8.0, help="longer recordings are cut")
    g.add_argument("--user_preval_seconds", type=float, default=None,
                   help="held-out noisy seconds for model selection (at most a fifth of the recordings; "
                   "default: 30 s x --split_scale)")
    g.add_argument("--user_fsl_val_seconds", type=float, default=None,
                   help="held-out clean seconds for the few-shot validation (at most a third of the clean "
                   "speech, none below 30 s of it; default: 30 s x --split_scale)")
    return p


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    # The data stage does short vector ops; torch's thread pool only adds contention here.
    torch.set_num_threads(1)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s"
    )
    corpus = args.base_corpus if args.corpus == "user" else args.corpus
    defaults = _CORPUS_DEFAULTS[corpus]
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    layout = LayoutConfig(
        seed=args.seed,
        split_scale=args.split_scale,
        test_mixtures=args.test_mixtures,
        val_mixtures=args.val_mixtures,
        mixture_seconds=args.mixture_seconds,
        interferer_test=args.interferer_test,
    )
    if corpus == "embedded":
        corpus_cfg = EmbeddedConfig(
            num_speakers=args.num_speakers,
            num_target=args.num_target,
            num_validation=args.num_validation,
            minutes_per_speaker=args.minutes_per_speaker,
            noise_files_per_family=args.noise_files_per_family,
            seed=args.seed,
        )
    elif corpus == "debian_real":
        corpus_cfg = DebianConfig(
            debian_dir=str(Path(args.debian_dir).absolute()) if args.debian_dir else "",
            targets=tuple(args.debian_targets),
            target_minutes=args.debian_target_minutes,
            other_minutes=args.debian_other_minutes,
            noise_minutes=args.debian_noise_minutes,
            seed=args.seed,
        )
    else:
        corpus_cfg = RealConfig(
            librispeech=args.librispeech,
            fsd50k=args.fsd50k,
            musan=args.musan,
            subsets=tuple(args.librispeech_subsets),
            target_speakers=tuple(args.target_speakers),
            validation_speakers=tuple(args.validation_speakers),
            musan_val_files=args.musan_val_files,
            download=args.download,
            download_dir=str(Path(args.download_dir).absolute()),
        )
    if args.corpus == "user" and not args.user_noisy_dir:  # the recipe personalizes its targets from recordings
        raise ValueError("--corpus user needs --user_noisy_dir (a folder of the user's noisy recordings)")
    if args.user_test_dir and not (args.user_noisy_dir or args.user_clean_dir):
        raise ValueError("--user_test_dir needs --user_noisy_dir or --user_clean_dir (the user's own speech)")
    if (args.user_noisy_dir or args.user_clean_dir) and args.user_segment_seconds < 2 * 4.0:
        raise ValueError(
            "--user_segment_seconds must be at least 8 s (segments are at least half of it, >= 4 s)"
        )
    out = Path(args.out)
    prepare_corpus(out, corpus, layout, corpus_cfg, nj=args.nj)
    if args.user_noisy_dir or args.user_clean_dir:
        user = UserConfig(
            name=args.user_name,
            noisy_dir=str(Path(args.user_noisy_dir).absolute()) if args.user_noisy_dir else "",
            clean_dir=str(Path(args.user_clean_dir).absolute()) if args.user_clean_dir else "",
            test_dir=str(Path(args.user_test_dir).absolute()) if args.user_test_dir else "",
            segment_seconds=args.user_segment_seconds,
            preval_seconds=args.user_preval_seconds or 30.0 * args.split_scale,
            fsl_val_seconds=args.user_fsl_val_seconds or 30.0 * args.split_scale,
            val_mixtures=args.val_mixtures,
            mixture_seconds=args.mixture_seconds,
            seed=args.seed,
        )
        prepare_user(out.absolute(), user, nj=args.nj)


if __name__ == "__main__":
    try:
        main()
    except (ValueError, OSError, RuntimeError) as err:
        logging.error("%s", err)
        sys.exit(1)
