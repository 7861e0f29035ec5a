#!/usr/bin/env python3
"""Personalize a speech enhancement model to one voice: ``python -m espnet2_pse.bin.personalize``.

Examples:
    # zero-shot: only the person's own noisy recordings (any rate, mono/stereo, wav/flac)
    python -m espnet2_pse.bin.personalize --noisy_dir my_recordings/ --out me.zip
    # then, with the same work dir, a few seconds of clean speech (few-shot): the zero-shot
    # model is reused and fine-tuned
    python -m espnet2_pse.bin.personalize --noisy_dir my_recordings/ --clean_dir my_clean/ --out me_fs.zip \\
        --work_dir me_work
    # no noisy recordings, only a few seconds to a minute of clean speech: few-shot training
    # straight from the base (the zero-shot step is skipped)
    python -m espnet2_pse.bin.personalize --clean_dir my_clean/ --out me_clean.zip
    python -m espnet2_pse.bin.enhance --model me.zip noisy_files/ --out_dir enhanced/

Steps (each leaves a done marker under --work_dir; rerunning skips finished steps, and a
killed training resumes from its last epoch through ESPnet's ``--resume true``):
  1. data: the recipe's stage-1 code (``espnet2_pse.bin.prepare_data``, as ``local/data.sh
     --user_noisy_dir`` runs it) builds the noise banks (by default a small ``debian_real``
     corpus: real recorded sound effects from Debian packages) and
     data/speakers/<user>/{pretrain,preval,fsl_train,fsl_val}.
  2. zsl: zero-shot PseudoSE training through ``PSETask``, from the base model (by default the
     shipped generalist, :data:`DEFAULT_BASE`; a speaker-conditioned base is first conditioned
     on the teacher's centroid of the recordings and folded into a plain network,
     :mod:`espnet2_pse.spk.fold`), on the recordings that the base finds least noisy
     (``--keep_cleanest``): the recordings plus injection noise are the input; below 4 kHz the
     target is half the recording, half the base model's enhancement of it (``--teacher_weight``),
     above it the enhancement alone (``--teacher_weight_above``, ``--teacher_split_hz``;
     ``--teacher_weight_noise`` raises the share in the time-frequency cells that the base
     removes); the loss is the SNR plus a compressed spectral distance (``--spectral_weight``),
     which ``--spectral_reference teacher`` scores against the base's enhancement alone. The
     base's enhancement of each recording is computed once (``<work_dir>/teacher_outputs``).
     Training runs ``--max_epoch`` epochs (counted in work, so a busy machine gives the same
     model, later) under a one-cycle learning rate (warm-up to ``--lr``, then a cosine anneal);
     the last epoch is kept (with ``--teacher_weight 0``: the best on the held-out preval
     pseudo-mixtures). ``--budget_minutes`` optionally caps the wall-clock time, and the
     command then says at the end how many epochs it ran.
     Skipped without --noisy_dir.
  3. fsl (only with --clean_dir): supervised fine-tuning on the clean speech with injection
     noise and talkers, ``--fsl_max_epoch`` epochs (``--fsl_budget_minutes`` caps it), from
     the zero-shot model, or without --noisy_dir from the base (a conditioned base folded on
     the clean speech's centroid); checkpoint chosen on the fsl_val mixtures (held-out clean
     speech; below 30 s of it, the training speech itself); its loss adds differentiable PESQ
     and eSTOI proxies (``--fsl_perceptual_weights``), which the clean targets make safe to follow.
  4. pack: ``espnet2.bin.pack enh`` writes --out, which ``enhance`` and
     ``SeparateSpeech.from_pretrained`` (after ``import espnet2_pse``) load.
Each epoch logs "epoch k, elapsed, ETA". With the same inputs, seed and thread count the
same model comes out (CPU; GPU kernels may differ in the last bits).
"""

import argparse
import logging
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch
import yaml

from espnet2_pse.bin.personalize_config import (CLEAN_ONLY_BATCHES, CLEAN_ONLY_BATCHES_PER_SECOND, DEFAULT_BASE,
                                                DEFAULT_DATA_OPTS, DEFAULT_FSL_EPOCHS, DEFAULT_FSL_PERCEPTUAL_WEIGHTS,
                                                DEFAULT_KEEP_CLEANEST, DEFAULT_SEGMENTS_PER_EPOCH,
                                                DEFAULT_SPECTRAL_WEIGHT, DEFAULT_TALKER_PROB, DEFAULT_TEACHER_SPLIT_HZ,
                                                DEFAULT_TEACHER_WEIGHT, DEFAULT_TEACHER_WEIGHT_ABOVE,
                                                DEFAULT_ZSL_EPOCHS, DEFAULT_ZSL_PEAK_LR, KEEP_CLEANEST_MIN_SECONDS,
                                                SAMPLE_RATE, batches_per_epoch, clean_only_epochs, training_config,
                                                yaml_options)
from espnet2_pse.bin.personalize_models import MODEL_KEYS, MODEL_SIZES, causal_section, model_section
from espnet2_pse.bin.personalize_progress import Progress, pack, remove_logging, setup_logging, train
from espnet2_pse.data.kaldi_dir import read_data_dir, read_table
from espnet2_pse.losses.distances import min_samples
from espnet2_pse.inference.model_loading import resolve_model
from espnet2_pse.spk.fold import fold_user_recordings, is_conditioned
from espnet2_pse.ssl.teacher import TEACHER_OUTPUT_KEY, cleanest_segments, write_teacher_outputs

logger = logging.getLogger("espnet2_pse.personalize")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Personalize a speech enhancement model from one person's noisy recordings "
        "(zero-shot), optionally fine-tuned on a little clean speech (few-shot), or from that clean speech "
        "alone; writes a packed zip.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--noisy_dir", default="",
                   help="folder of the person's own noisy recordings (zero-shot); without it, --clean_dir alone "
                   "trains the few-shot step straight from --base")
    p.add_argument("--out", required=True, help="packed model to write (.zip)")
    p.add_argument("--clean_dir", default="",
                   help="folder of clean speech of the person (few-shot; without --noisy_dir, from the base)")
    p.add_argument("--user_name", default="user", help="speaker id of the person in the data root")
    p.add_argument("--work_dir", default=None,
                   help="data, experiments and done markers; unset: <out without .zip>_work")
    g = p.add_argument_group("data (the recipe's stage 1)")
    g.add_argument("--data_root", default=None,
                   help="data root with noise banks (the recipe's data/); built from --data_opts when "
                   "missing; unset: <work_dir>/data")
    g.add_argument("--data_opts", default=DEFAULT_DATA_OPTS,
                   help="options for espnet2_pse.bin.prepare_data; they must match how an existing --data_root "
                   "was built (\"\" for prepare_data's own defaults: the embedded synthetic corpus)")
    g.add_argument("--nj", type=int, default=1, help="worker processes for data preparation")
    g = p.add_argument_group("zero-shot training")
    g.add_argument("--base", default=str(DEFAULT_BASE),
                   help="start from this model (zip, dir or HF id; its architecture is kept), or 'none' to "
                   "train --model_size from scratch; a speaker-conditioned model (pconv_tasnet, packed with its "
                   "teacher) is first conditioned on the recordings' speaker and folded into a plain one")
    g.add_argument("--model_size", choices=MODEL_SIZES, default="stft", help="network with --base none")
    g.add_argument("--causal", action="store_true",
                   help="a causal personal model (streaming, pse-export --streaming): the base's network with "
                   "causal convolutions and cumulative norms, initialised from the base's weights (a teacher of "
                   "--teacher_weight stays the non-causal base)")
    g.add_argument("--method", choices=("pseudo_se", "contrastive_mixtures"), default="pseudo_se",
                   help="self-supervised objective (add DP with the --dp_predictor_* options)")
    g.add_argument("--teacher_weight", type=float, default=None,
                   help="pseudo_se target: this share of the base model's enhancement of the recording, the "
                   "rest the recording itself (0: plain PseudoSE; > 0 needs a --base and keeps the last "
                   "epoch; unset: %g with pseudo_se from a base, the best measured on real voices, else 0)"
                   % DEFAULT_TEACHER_WEIGHT)
    g.add_argument("--teacher_weight_above", type=float, default=None,
                   help="pseudo_se target: the base model's share above --teacher_split_hz instead (unset: %g "
                   "with a teacher); a larger share there cleans the background that DNSMOS hears at little "
                   "cost in SNR, which low frequencies dominate (--teacher_weight's value: one share "
                   "everywhere)" % DEFAULT_TEACHER_WEIGHT_ABOVE)
    g.add_argument("--teacher_split_hz", type=float, default=DEFAULT_TEACHER_SPLIT_HZ,
                   help="where --teacher_weight_above takes over (a one-octave crossover centred here)")
    g.add_argument("--teacher_weight_noise", type=float, default=None,
                   help="pseudo_se target: the base model's share in the time-frequency cells that it removes "
                   "(its gain 0), moving from the band's share where it keeps everything (gain 1); unset: the "
                   "band's share everywhere")
    g.add_argument("--keep_cleanest", type=float, default=None,
                   help="zero-shot: train on this share of the recordings' audio, the segments that the base model "
                   "finds least noisy, at least %d min (unset: %g with a teacher, else 1: all)"
                   % (KEEP_CLEANEST_MIN_SECONDS // 60, DEFAULT_KEEP_CLEANEST))
    g.add_argument("--max_epoch", type=int, default=DEFAULT_ZSL_EPOCHS,
                   help="length of the zero-shot step in epochs (the same model however busy the machine is)")
    g.add_argument("--budget_minutes", type=float, default=None,
                   help="optional wall-clock cap of the zero-shot step: no epoch starts that would end after "
                   "it (fewer epochs on a busy machine: a weaker model, which the command reports)")
    g.add_argument("--config", default=None,
                   help="YAML of ESPnet training options overriding the defaults (--max_epoch and --lr still win)")
    g.add_argument("--inject_noise_scp", default=None,
                   help="injection noise wav.scp (16 kHz); unset: the data root's noise/inject_train")
    g.add_argument("--talker_scp", default=None,
                   help="wav.scp of other voices, injected as interfering talkers in both steps so that the model "
                   "keeps only the user's voice; unset: the data root's generalist/train voices")
    g.add_argument("--talker_prob", type=float, default=None,
                   help="share of the training inputs with an interfering talker (0: noise injection only; "
                   "unset: %g with pseudo_se, 0 with contrastive_mixtures)" % DEFAULT_TALKER_PROB)
    g.add_argument("--talker_tir_range", type=float, nargs=2, default=(0.0, 10.0), metavar=("LOW", "HIGH"),
                   help="target-to-interferer ratio of the injected talker in dB, against the recording")
    g.add_argument("--talker_alone_prob", type=float, default=0.25,
                   help="share of the talker inputs without injection noise (another voice, nothing else)")
    g.add_argument("--dp_predictor_config", default=None, help="DP: config.yaml of a trained SNR predictor")
    g.add_argument("--dp_predictor_model", default=None, help="DP: its model file")
    g.add_argument("--segments_per_epoch", type=int, default=DEFAULT_SEGMENTS_PER_EPOCH,
                   help="recording segments (<= 8 s) per epoch; each gives about 2 crops per second (50%% overlap)")
    g.add_argument("--batch_size", type=int, default=8, help="chunks per batch")
    g.add_argument("--chunk_seconds", type=float, default=2.0, help="training crop length in seconds")
    g.add_argument("--lr", type=float, default=DEFAULT_ZSL_PEAK_LR,
                   help="peak Adam learning rate of the zero-shot step's one-cycle schedule (a --config with "
                   "'scheduler: null' trains at this rate throughout)")
    g.add_argument("--spectral_weight", type=float, default=DEFAULT_SPECTRAL_WEIGHT,
                   help="weight of the compressed spectral distance (pse_distance 'cspec', dB) added to the SNR "
                   "loss in both steps (0: SNR alone)")
    g.add_argument("--spectral_reference", choices=("target", "teacher"), default="target",
                   help="what the zero-shot spectral term scores against: the SNR term's target (the blend of "
                   "--teacher_weight) or the base model's enhancement alone, whose background is cleaner")
    g = p.add_argument_group("few-shot fine-tuning (with --clean_dir)")
    g.add_argument("--fsl_max_epoch", type=int, default=None,
                   help="length of the fine-tuning in epochs (unset: %d after the zero-shot step; from the base, "
                   "without --noisy_dir, as many as make %d batches per second of clean speech, %d to %d)"
                   % (DEFAULT_FSL_EPOCHS, CLEAN_ONLY_BATCHES_PER_SECOND, *CLEAN_ONLY_BATCHES))
    g.add_argument("--fsl_budget_minutes", type=float, default=None,
                   help="optional wall-clock cap of the fine-tuning (as --budget_minutes)")
    g.add_argument("--fsl_lr", type=float, default=1e-4, help="Adam learning rate of the fine-tuning")
    g.add_argument("--fsl_perceptual_weights", type=float, nargs=2, default=list(DEFAULT_FSL_PERCEPTUAL_WEIGHTS),
                   metavar=("PESQ", "ESTOI"),
                   help="weights of the PESQ and eSTOI proxy terms (pse_distance 'pesq', 'estoi') added to the "
                   "few-shot loss ('0 0': SNR and spectral distance alone)")
    g.add_argument("--fsl_config", default=None,
                   help="YAML of ESPnet training options of the few-shot step only, over --config; the zero-shot "
                   "model of the work dir is reused")
    g = p.add_argument_group("run")
    g.add_argument("--ngpu", type=int, default=0, help="GPUs for training (0: CPU)")
    g.add_argument("--seed", type=int, default=0, help="seed of the data preparation and the training")
    g.add_argument("--train_args", default="", help="extra options for every training run, e.g. '--num_workers 2'")
    g.add_argument("--snapshot_epochs", type=int, nargs="+", default=[], metavar="EPOCH",
                   help="also keep the model after these epochs of each training step as "
                   "exp/<step>/snapshot_ep<EPOCH>.pth, with its elapsed time in exp/<step>/snapshots.json "
                   "(quality-against-time curves; enhance takes the .pth as --model; mid-way through the "
                   "zero-shot one-cycle schedule the rate is still high, so the curve of shorter runs is "
                   "that of smaller --max_epoch)")
    return p


def prepare_data(args, data_root: Path) -> Path:
    """The recipe's stage 1 with the user's folders; returns speakers/<user>."""
    from espnet2_pse.bin import prepare_data as stage1

    cmd = ["--out", str(data_root), "--nj", str(args.nj), *shlex.split(args.data_opts), "--user_name", args.user_name]
    if args.noisy_dir:
        cmd += ["--user_noisy_dir", str(Path(args.noisy_dir).absolute())]
    if args.clean_dir:
        cmd += ["--user_clean_dir", str(Path(args.clean_dir).absolute())]
    threads = torch.get_num_threads()
    logger.info("personalize data: prepare_data %s", " ".join(cmd))
    try:
        stage1.main(cmd)
    finally:
        torch.set_num_threads(threads)  # stage 1 runs single-threaded; training should not
    return data_root / "speakers" / args.user_name


def check_args(args) -> None:
    """Refuse contradicting options; ``--base none`` becomes ``args.base = None``."""
    if args.base and args.base.lower() == "none":
        args.base = None
    if not args.noisy_dir and not args.clean_dir:
        raise ValueError("give --noisy_dir (your own noisy recordings), --clean_dir (a little clean speech) or both")
    if not args.noisy_dir and not args.base:
        raise ValueError("--clean_dir alone fine-tunes a --base model; --base none needs --noisy_dir")
    if args.fsl_max_epoch is None and args.noisy_dir:  # clean only: set from the clean speech's length
        args.fsl_max_epoch = DEFAULT_FSL_EPOCHS
    if Path(args.out).suffix != ".zip":
        raise ValueError(f"--out {args.out}: the packed model must be a .zip file")
    if bool(args.dp_predictor_config) != bool(args.dp_predictor_model):
        raise ValueError("DP needs both --dp_predictor_config and --dp_predictor_model")
    for name in ("noisy_dir", "clean_dir"):
        if getattr(args, name) and not Path(getattr(args, name)).is_dir():
            raise FileNotFoundError(f"--{name} {getattr(args, name)}: not a directory")
    if args.fsl_config and not args.clean_dir:
        raise ValueError("--fsl_config sets options of the few-shot step, which needs --clean_dir")
    for name in ("config", "fsl_config"):  # read now, not after the zero-shot step
        if getattr(args, name):
            yaml_options(getattr(args, name), f"--{name}")
    if args.teacher_weight is None:
        args.teacher_weight = DEFAULT_TEACHER_WEIGHT if args.base and args.method == "pseudo_se" else 0.0
    if not 0.0 <= args.teacher_weight <= 1.0:
        raise ValueError(f"--teacher_weight must be in [0, 1], got {args.teacher_weight}")
    if args.teacher_weight > 0 and not args.base:
        raise ValueError("--teacher_weight > 0 needs a --base model as the teacher; use --teacher_weight 0 "
                         "with --base none")
    if args.method != "pseudo_se" and args.teacher_weight > 0:
        raise ValueError(f"--teacher_weight is a pseudo_se option; use --teacher_weight 0 with --method {args.method}")
    if args.keep_cleanest is not None and not 0.0 < args.keep_cleanest <= 1.0:
        raise ValueError(f"--keep_cleanest must be in (0, 1], got {args.keep_cleanest}")
    if args.keep_cleanest is None:
        args.keep_cleanest = DEFAULT_KEEP_CLEANEST if args.teacher_weight > 0 else 1.0
    elif args.keep_cleanest < 1 and args.teacher_weight <= 0:
        raise ValueError("--keep_cleanest ranks the recordings with the teacher: it needs a --base and --teacher_weight > 0")
    if args.talker_prob is None:
        args.talker_prob = DEFAULT_TALKER_PROB if args.method == "pseudo_se" else 0.0
    if not 0.0 <= args.talker_prob <= 1.0 or not 0.0 <= args.talker_alone_prob <= 1.0:
        raise ValueError("--talker_prob and --talker_alone_prob must be in [0, 1]")
    if args.talker_prob > 0 and args.method != "pseudo_se":
        raise ValueError(f"interfering talkers are a pseudo_se option; use --talker_prob 0 with --method {args.method}")
    if args.talker_tir_range[0] > args.talker_tir_range[1]:
        raise ValueError(f"--talker_tir_range {args.talker_tir_range}: LOW must not exceed HIGH")
    for name in ("budget_minutes", "fsl_budget_minutes"):
        if getattr(args, name) is not None and getattr(args, name) <= 0:
            raise ValueError(f"--{name} must be positive (leave it out for no time cap)")
    for name in ("max_epoch", "fsl_max_epoch"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ValueError(f"--{name} must be at least 1")
    for name in ("teacher_weight_above", "teacher_weight_noise"):
        value = getattr(args, name)
        if value is not None and not 0.0 <= value <= 1.0:
            raise ValueError(f"--{name} must be in [0, 1], got {value}")
        if value is not None and args.teacher_weight <= 0:
            raise ValueError(f"--{name} needs a teacher: a --base and --teacher_weight > 0")
    if args.teacher_weight_above is None and args.teacher_weight > 0:
        args.teacher_weight_above = DEFAULT_TEACHER_WEIGHT_ABOVE
    if args.teacher_weight_above is not None:
        if not 0.0 < args.teacher_split_hz < SAMPLE_RATE / 2:
            raise ValueError(f"--teacher_split_hz must be in (0, {SAMPLE_RATE // 2}) Hz, got {args.teacher_split_hz}")
    if args.spectral_weight < 0:
        raise ValueError(f"--spectral_weight must be >= 0, got {args.spectral_weight}")
    if min(args.fsl_perceptual_weights) < 0:
        raise ValueError(f"--fsl_perceptual_weights must be >= 0, got {args.fsl_perceptual_weights}")
    if args.clean_dir and max(args.fsl_perceptual_weights) > 0:
        needed = max(min_samples("pesq"), min_samples("estoi")) / SAMPLE_RATE
        if args.chunk_seconds < needed:
            raise ValueError(f"--chunk_seconds {args.chunk_seconds:g} is too short for the few-shot PESQ and eSTOI "
                             f"terms (they need {needed:.2f} s); use a longer crop or --fsl_perceptual_weights 0 0")
    if args.spectral_reference == "teacher" and not (args.spectral_weight and args.teacher_weight > 0):
        raise ValueError("--spectral_reference teacher needs a spectral term (--spectral_weight > 0) and a teacher "
                         "(--teacher_weight > 0)")
    if args.spectral_reference == "teacher" and args.dp_predictor_config:
        raise ValueError("--spectral_reference teacher cannot be combined with DP weights (--dp_predictor_config): "
                         "the spectral term is not segmental")
    if any(epoch < 1 for epoch in args.snapshot_epochs):
        raise ValueError(f"--snapshot_epochs {args.snapshot_epochs}: epochs count from 1")


def zero_shot(args, work: Path, speaker: Path, model: Dict, base_files, injection: Dict,
              on_epoch: Callable[[int, int, float, float], None], cut_short: List[str]) -> Path:
    """Step 2: zero-shot training on the user's recordings; returns the selected checkpoint."""
    objective = dict(injection)
    teacher = args.teacher_weight > 0
    if teacher:
        objective.update(teacher={"config": str(base_files.train_config), "model_file": str(base_files.model_file)},
                         teacher_weight=args.teacher_weight,
                         teacher_reference=args.spectral_reference == "teacher",
                         # check_args set the share above the split whenever there is a teacher
                         teacher_weight_above=args.teacher_weight_above, teacher_split_hz=args.teacher_split_hz,
                         teacher_weight_noise=args.teacher_weight_noise)
    dp = bool(args.dp_predictor_config)
    if dp:
        objective["dp_predictor"] = {"config": str(Path(args.dp_predictor_config).absolute()),
                                     "model_file": str(Path(args.dp_predictor_model).absolute())}
    logger.info("personalize: step 2/4 zero-shot %s training%s", args.method,
                f" (targets: {args.teacher_weight:g} x the base model's enhancement)" if teacher else "")
    # The preval references are the noisy recordings themselves: their loss would favour models
    # that keep the recordings' background, which the teacher's targets remove, so a teacher run
    # keeps its last epoch.
    precomputed: Tuple[str, ...] = ()
    segments = read_data_dir(speaker / "pretrain")
    if teacher:  # the teacher's outputs on the recordings never change: computed once, not per batch
        table = write_teacher_outputs(base_files.train_config, base_files.model_file,
                                      speaker / "pretrain" / "spk1.scp", work / "teacher_outputs")
        precomputed = (f"{table},{TEACHER_OUTPUT_KEY},sound",)
    if args.keep_cleanest < 1:
        segments = cleanest_segments(segments, table, args.keep_cleanest, KEEP_CLEANEST_MIN_SECONDS,
                                     work / f"pretrain_cleanest_{args.keep_cleanest:g}")
    steps = args.max_epoch * batches_per_epoch(segments, args)
    zsl_config = training_config(args, model, args.method, objective, args.lr, args.max_epoch, dp,
                                 args.spectral_reference, one_cycle_steps=steps)
    return train(args, "zsl", work / "exp" / "zsl", zsl_config, segments.path, speaker / "preval",
                 base_files.model_file if base_files else None, args.budget_minutes,
                 select="latest.pth" if teacher else "valid.loss.best.pth", cut_short=cut_short,
                 on_epoch=on_epoch, extra_train_data=precomputed)


def personalize(args, progress: Optional[Callable[[dict], None]] = None) -> Path:
    """The four steps (module docstring); returns the written zip. ``progress`` gets a dict
    per step and epoch (see :func:`espnet2_pse.api.personalize`)."""
    check_args(args)  # idempotent; main() has already run it
    out = Path(args.out).absolute()
    work = work_dir_of(args)
    data_root = Path(args.data_root).absolute() if args.data_root else work / "data"
    start = time.perf_counter()
    report = Progress(progress, ("zsl",) * bool(args.noisy_dir) + ("fsl",) * bool(args.clean_dir))
    logger.info("personalize: step 1/4 data (%s)", data_root)
    report.step("data")
    speaker = prepare_data(args, data_root)

    model, base_files = model_section(args.model_size), None
    if args.base:
        base_files = resolve_model(args.base, work / "base")
        base_config = yaml.safe_load(base_files.train_config.read_text(encoding="utf-8"))
        if is_conditioned(base_config):  # the user's voice folded in: from here on a plain base
            own = speaker / ("pretrain" if args.noisy_dir else "fsl_train") / "spk1.scp"
            recordings = map(Path, read_table(own).values())
            base_files = fold_user_recordings(base_files, recordings, work / "base_folded", SAMPLE_RATE)
            base_config = yaml.safe_load(base_files.train_config.read_text(encoding="utf-8"))
        model = {k: base_config[k] for k in MODEL_KEYS if k in base_config}
    if args.causal:
        model = causal_section(model)
    inject = str(Path(args.inject_noise_scp).absolute()) if args.inject_noise_scp \
        else str(data_root / "noise" / "inject_train" / "wav.scp")
    # The recordings are already noisy (premixed): no premixture bank for the user.
    injection = {"inject_noise_scp": inject, "premix_noise_scp": None, "seed": args.seed}
    if args.talker_prob > 0:
        talkers = str(Path(args.talker_scp).absolute()) if args.talker_scp \
            else str(data_root / "generalist" / "train" / "wav.scp")
        injection.update(talker_scp=talkers, talker_prob=args.talker_prob,
                         talker_tir_range=list(args.talker_tir_range), talker_alone_prob=args.talker_alone_prob)
    cut_short: List[str] = []
    final_exp, final = work / "exp" / "zsl", base_files.model_file if base_files else None
    if args.noisy_dir:
        report.step("zsl")
        final = zero_shot(args, work, speaker, model, base_files, injection, report.epochs("zsl"), cut_short)
    else:
        logger.info("personalize: step 2/4 zero-shot training skipped (no --noisy_dir): few-shot from the base")

    if args.clean_dir:
        logger.info("personalize: step 3/4 few-shot fine-tuning on the clean speech")
        if args.fsl_max_epoch is None:
            args.fsl_max_epoch = clean_only_epochs(read_data_dir(speaker / "fsl_train"), args)
            logger.info("personalize fsl: %d epochs, about %d batches per second of clean speech",
                        args.fsl_max_epoch, CLEAN_ONLY_BATCHES_PER_SECOND)
        # Clean speech: ordinary supervised training with on-the-fly injection (noise and talkers).
        fsl_config = training_config(args, model, "pseudo_se", dict(injection), args.fsl_lr, args.fsl_max_epoch, False,
                                     few_shot=True, perceptual_weights=tuple(args.fsl_perceptual_weights))
        final_exp = work / "exp" / "fsl"
        report.step("fsl")
        final = train(args, "fsl", final_exp, fsl_config, speaker / "fsl_train", speaker / "fsl_val", final,
                      args.fsl_budget_minutes, cut_short=cut_short, on_epoch=report.epochs("fsl"))
    else:
        logger.info("personalize: step 3/4 few-shot fine-tuning skipped (no --clean_dir)")

    logger.info("personalize: step 4/4 packing %s", out)
    report.step("pack")
    summary = final_exp / "personalize.yaml"
    selected = Path(os.path.realpath(final)).relative_to(work).as_posix()
    settings = {"user": args.user_name, "base": args.base, "zero_shot": bool(args.noisy_dir)}
    if args.noisy_dir:
        settings.update({
            "method": args.method, "dp": bool(args.dp_predictor_config),
            "teacher_weight": args.teacher_weight, "teacher_weight_above": args.teacher_weight_above,
            "teacher_split_hz": args.teacher_split_hz, "teacher_weight_noise": args.teacher_weight_noise,
            "keep_cleanest": args.keep_cleanest, "spectral_reference": args.spectral_reference})
    settings.update({
        "talker_prob": args.talker_prob, "few_shot": bool(args.clean_dir), "causal": args.causal,
        "selected_checkpoint": selected,
        "selection": ("valid loss on fsl_val" if args.clean_dir else
                      "last epoch" if args.teacher_weight > 0 else "valid loss on preval pseudo-mixtures")})
    summary.write_text(yaml.safe_dump(settings, sort_keys=False), encoding="utf-8")
    pack(work, final_exp / "config.yaml", final, out, summary)
    logger.info("personalize: wrote %s in %.0f s (work dir %s)", out, time.perf_counter() - start, work)
    for line in cut_short:
        logger.warning("%s", line)
    report.step("done")
    return out


def work_dir_of(args) -> Path:
    out = Path(args.out).absolute()
    return Path(args.work_dir or out.with_name(out.stem + "_work")).absolute()


def main(cmd: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(cmd)
    try:
        check_args(args)  # before the work dir (and its log) exists: a refused call leaves nothing behind
    except (ValueError, OSError) as err:
        logger.error("%s", err)
        return 1
    handlers = setup_logging(work_dir_of(args))
    logger.info("personalize: full log (ESPnet's trainer included) in %s", handlers[0].baseFilename)
    try:
        personalize(args)
    except (ValueError, OSError, RuntimeError) as err:
        logger.error("%s", err)
        return 1
    finally:
        remove_logging(handlers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
