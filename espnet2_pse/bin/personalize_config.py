"""The ESPnet training options of ``personalize``'s two steps (zero-shot and few-shot)."""

from pathlib import Path
from typing import Dict, Tuple

import yaml

from espnet2_pse.bin.personalize_models import MODEL_KEYS
from espnet2_pse.data.kaldi_dir import DataDir

SAMPLE_RATE = 16000

# The zero-shot step's learning rate: a one-cycle schedule (warm-up over this share of the
# batches from --lr / 25 to --lr, then a cosine anneal to about 0). On the real voices its 24
# epochs matched 45 at a constant 3e-4, while 30 constant stayed 0.1-0.7 dB behind (README).
ZSL_WARMUP_SHARE = 0.1
DEFAULT_ZSL_PEAK_LR = 1e-3
# Training length, counted in epochs of --segments_per_epoch recording segments so that the result
# does not depend on the machine's load: about 4.5 min zero-shot and 1 min few-shot on 2 idle
# cores. Epochs of 60 segments validate a third as often as 20 did (the held-out pass cost a
# fifth of the time). Few-shot gains nothing measurable after 200-300 segments on real voices.
DEFAULT_SEGMENTS_PER_EPOCH = 60
DEFAULT_ZSL_EPOCHS = 24
DEFAULT_FSL_EPOCHS = 5
# Few-shot straight from the base (clean speech only, no zero-shot model) learns the voice from
# those seconds alone, so its length follows how many there are: this many batches per second of
# clean training speech, within CLEAN_ONLY_BATCHES. On the tuning voice (fillets_nl_v) 5 s
# overfit past about 120 batches (SI-SDRi with noise 7.46 / 6.64 / 5.43 dB after 120 / 240 /
# 450), while 50 s gained 0.15 dB from 330 batches to 550, not worth 2 more minutes.
CLEAN_ONLY_BATCHES_PER_SECOND = 24
CLEAN_ONLY_BATCHES = (100, 400)
# Weights of the PESQ and eSTOI proxy terms in the few-shot loss. Against clean targets they
# raised PESQ-WB by 0.06-0.07, eSTOI, DNSMOS and pDNSMOS on real voices for 0.10 dB of SI-SDRi
# and 0.005 of speaker similarity; against the zero-shot step's noisy targets they cost
# 0.26-0.40 dB, so not there.
DEFAULT_FSL_PERCEPTUAL_WEIGHTS = (5.0, 30.0)
# Weight of the compressed spectral distance beside the SNR loss: on real voices it raised
# PESQ-WB by 0.04-0.06 and eSTOI by about 0.01 in both steps, SI-SDRi unchanged or better.
DEFAULT_SPECTRAL_WEIGHT = 1.0

# The generalist personalize starts from (egs2/pse_ssl/pse1/conf/tuning/train_generalist_stft_talkers.yaml).
DEFAULT_BASE = Path(__file__).resolve().parents[1] / "pretrained" / "generalist_stft.zip"
# Zero-shot PseudoSE target from a base: half the base's enhancement of the recording, half the
# recording (on the real-voice benchmark 0.5 beat both 0, plain PseudoSE, and 1).
DEFAULT_TEACHER_WEIGHT = 0.5
# Its share above DEFAULT_TEACHER_SPLIT_HZ: all of it. There the base cleans the background that
# DNSMOS hears where little of the SNR lies; on the real-voice benchmark every mean moved by
# -0.001 to +0.06 against 0.5 there (zero-shot PESQ-WB +0.02, DNSMOS +0.06).
DEFAULT_TEACHER_WEIGHT_ABOVE = 1.0
DEFAULT_TEACHER_SPLIT_HZ = 4000.0
# Share of the recordings' audio that the zero-shot step trains on: the segments that the base
# finds least noisy (the targets keep each recording's background); never under 5 minutes. On
# the real voices every perceptual mean rose (zero-shot DNSMOS +0.06, speaker similarity
# +0.01-0.02), SI-SDRi level (-0.05 to +0.07 dB).
DEFAULT_KEEP_CLEANEST = 0.5
KEEP_CLEANEST_MIN_SECONDS = 300.0
# Share of the training inputs that also hold another person's voice, so that the personal
# model drops voices that are not its user's.
DEFAULT_TALKER_PROB = 0.5
# Default data root: a small debian_real corpus, only needed for its noise banks (the user's
# held-out preval is 60 s, or a fifth of the recordings when they are shorter).
# Its generalist voices (75 real voices in many languages, 0.4 min each) are the interfering
# talkers of the injection; the validation voices, the benchmark's interferers, never are.
DEFAULT_DATA_OPTS = ("--corpus debian_real --debian_targets festru_ru --debian_target_minutes 2 "
                     "--debian_other_minutes 0.4 --split_scale 0.25 --test_mixtures 2 --val_mixtures 32 "
                     "--user_preval_seconds 60 --user_fsl_val_seconds 10")


def batches_per_epoch(segments: DataDir, args) -> int:
    """About how many batches ESPnet's chunk iterator cuts from --segments_per_epoch segments of
    ``segments``: crops of --chunk_seconds at 50 % overlap (a shorter segment is one crop), the
    last incomplete batch dropped. The epochs draw the segments in turn, so the mean holds."""
    crop = int(round(args.chunk_seconds * SAMPLE_RATE))
    crops = [max(1, (int(round(d * SAMPLE_RATE)) - crop) // (crop // 2) + 1) for d in segments.utt2dur.values()]
    return max(1, int(args.segments_per_epoch * sum(crops) / len(crops)) // args.batch_size)


def clean_only_epochs(fsl_train: DataDir, args) -> int:
    """Few-shot epochs straight from the base: CLEAN_ONLY_BATCHES_PER_SECOND batches per second
    of ``fsl_train``, within CLEAN_ONLY_BATCHES."""
    low, high = CLEAN_ONLY_BATCHES
    batches = min(max(CLEAN_ONLY_BATCHES_PER_SECOND * fsl_train.total_seconds(), low), high)
    return max(1, round(batches / batches_per_epoch(fsl_train, args)))


def yaml_options(path: str, option: str) -> Dict:
    """The mapping of ESPnet training options in the YAML file of ``option``."""
    try:
        options = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{option} {path} is not valid YAML: {err}") from None
    if not isinstance(options, dict):
        raise ValueError(f"{option} {path} must hold a mapping of ESPnet training options, "
                         f"got {type(options).__name__}")
    return options


def training_config(args, model: Dict, objective: str, objective_conf: Dict, lr: float, max_epoch: int,
                    dp: bool, spectral_reference: str = "target", one_cycle_steps: int = 0,
                    few_shot: bool = False, perceptual_weights: Tuple[float, float] = (0.0, 0.0)) -> Dict:
    """ESPnet training options: defaults, then --config, then (``few_shot``) --fsl_config, then
    this step's lr and epochs.

    ``spectral_reference`` "teacher": the spectral term scores against the teacher's output
    (``objective_conf`` must then ask PseudoSE for it with ``teacher_reference``).
    ``one_cycle_steps`` > 0: a one-cycle schedule peaking at ``lr`` over about that many batches
    (unless --config names a scheduler). ``perceptual_weights``: the weights of the PESQ and
    eSTOI proxy terms (0: none)."""
    distance = {"distance": "snr", "segmental": True} if dp else {"distance": "snr"}
    criterions = [{"name": "pse_distance", "conf": distance,
                   "wrapper": "dp_fixed_order" if dp else "fixed_order", "wrapper_conf": {"weight": 1.0}}]
    if args.spectral_weight:
        spectral = {"name": "pse_distance", "conf": {"distance": "cspec"}, "wrapper": "fixed_order",
                    "wrapper_conf": {"weight": args.spectral_weight}}
        if spectral_reference == "teacher":  # our wrapper reads the teacher's output from the batch
            spectral.update(wrapper="dp_fixed_order", wrapper_conf={**spectral["wrapper_conf"], "reference": "teacher"})
        criterions.append(spectral)
    for name, weight in zip(("pesq", "estoi"), perceptual_weights):
        if weight:
            criterions.append({"name": "pse_distance", "conf": {"distance": name}, "wrapper": "fixed_order",
                               "wrapper_conf": {"weight": weight}})
    config = {
        **model,
        "criterions": criterions,
        "iterator_type": "chunk",
        "chunk_length": int(round(args.chunk_seconds * SAMPLE_RATE)),
        "batch_type": "unsorted",
        "batch_size": args.batch_size,
        # ESPnet's chunk iterator counts utterances (here: segments) in num_iters_per_epoch.
        "num_iters_per_epoch": args.segments_per_epoch,
        "optim": "adam",
        "grad_clip": 5.0,
        "best_model_criterion": [["valid", "loss", "min"]],
        "keep_nbest_models": 1,
        "num_workers": 0,
        "seed": args.seed,
        "use_tensorboard": False,
        "use_matplotlib": False,
        "ssl_objective": objective,
        "ssl_objective_conf": objective_conf,
    }
    if one_cycle_steps:
        config.update(scheduler="onecyclehold",
                      scheduler_conf={"max_lr": lr, "total_steps": one_cycle_steps, "pct_start": ZSL_WARMUP_SHARE})
    if args.config:
        overrides = yaml_options(args.config, "--config")
        if args.base and set(overrides) & set(MODEL_KEYS):
            raise ValueError(f"--config {args.config} sets {sorted(set(overrides) & set(MODEL_KEYS))}, "
                             "but the network comes from --base; drop those keys or use --base none")
        config.update(overrides)
    if few_shot and args.fsl_config:
        overrides = yaml_options(args.fsl_config, "--fsl_config")
        if set(overrides) & set(MODEL_KEYS):
            raise ValueError(f"--fsl_config {args.fsl_config} sets {sorted(set(overrides) & set(MODEL_KEYS))}, "
                             "but the few-shot step fine-tunes the zero-shot network; drop those keys")
        config.update(overrides)
    config["max_epoch"] = max_epoch
    config["optim_conf"] = {**(config.get("optim_conf") or {}), "lr": lr}
    return config
