"""The embedded synthetic corpus: espeak-ng speakers and numpy noise, made offline.

Speakers ``syn01``... come from :func:`synth_speech.speaker_voices`; the first ``num_target`` are
targets, the next ``num_validation`` validation speakers, the rest generalist speakers. Each
speaker reads sentences until ``minutes_per_speaker`` of utterances between ``min_seconds``
(the paper's 4 s floor) and ``max_seconds`` exist. Noise files are drawn per bank and family
(:mod:`synth_noise`); validation/test-side banks get a third as many files per family as the
training banks (at least one). Everything is derived from ``seed``.
"""

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import List, Tuple

from espnet2_pse.data import synth_noise, synth_speech
from espnet2_pse.data.audio import SAMPLE_RATE, write_wav
from espnet2_pse.data.fixed_mixtures import Item
from espnet2_pse.data.layout import NOISE_BANKS, Sources
from espnet2_pse.data.runtime import derive_rng, parallel_map


@dataclass
class EmbeddedConfig:
    """Size knobs of the synthetic corpus (counts, minutes, seconds)."""

    num_speakers: int = 16
    num_target: int = 4
    num_validation: int = 4
    minutes_per_speaker: float = 1.75
    noise_files_per_family: int = 6
    noise_seconds: Tuple[float, float] = (4.5, 8.0)
    min_seconds: float = 4.0
    max_seconds: float = 10.0
    seed: int = 0

    def validate(self) -> None:
        available = len(synth_speech.speaker_voices())
        if not 3 <= self.num_speakers <= available:
            raise ValueError(f"num_speakers must be between 3 and {available}, got {self.num_speakers}")
        if (
            self.num_target < 1
            or self.num_validation < 1
            or self.num_target + self.num_validation >= self.num_speakers
        ):
            raise ValueError(
                "need >= 1 target, >= 1 validation and >= 1 generalist speaker; got "
                f"{self.num_target} target and {self.num_validation} validation out of {self.num_speakers}"
            )
        if self.minutes_per_speaker <= 0 or self.noise_files_per_family < 1:
            raise ValueError("minutes_per_speaker and noise_files_per_family must be positive")

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def speaker_id(index: int) -> str:
    return f"syn{index + 1:02d}"


def _speaker_job(job) -> List[Item]:
    """Synthesize one speaker's utterances; (spk, voice, seconds, cfg, out_dir) -> Items."""
    spk, voice, seconds, cfg, out_dir = job
    rng = derive_rng(cfg.seed, "speaker", spk)
    level = rng.uniform(0.25, 0.6)
    items: List[Item] = []
    total = 0.0
    for text in synth_speech.pick_sentences(synth_speech.load_sentences(), rng):
        if total >= seconds:
            break
        x = synth_speech.utterance(text, voice, rng, level)
        dur = len(x) / SAMPLE_RATE
        if not cfg.min_seconds <= dur <= cfg.max_seconds:
            continue
        key = f"{spk}-{len(items):04d}"
        path = out_dir / spk / f"{key}.wav"
        write_wav(path, x)
        items.append(Item(key, str(path), dur, spk))
        total += dur
    if total < seconds:
        raise RuntimeError(f"speaker {spk}: ran out of sentences after {total:.0f} s (asked {seconds:.0f} s)")
    return items


def _noise_job(job) -> Item:
    """Generate one noise file; (bank, family, index, cfg, out_dir) -> Item."""
    bank, family, index, cfg, out_dir = job
    rng = derive_rng(cfg.seed, "noise", bank, family, index)
    seconds = rng.uniform(*cfg.noise_seconds)
    ctx = {"sentences": synth_speech.load_sentences()}
    x = synth_noise.generate(family, rng, seconds, ctx)
    key = f"{bank}-{family}-{index:03d}"
    path = out_dir / bank / f"{key}.wav"
    write_wav(path, x)
    return Item(key, str(path), len(x) / SAMPLE_RATE, family)


def _run(job):
    kind, payload = job
    return kind, (_speaker_job if kind == "speaker" else _noise_job)(payload)


def files_per_family(bank: str, cfg: EmbeddedConfig) -> int:
    if bank in ("premix_train", "inject_train", "test"):
        return cfg.noise_files_per_family
    return max(1, round(cfg.noise_files_per_family / 3))


def build_sources(out: Path, cfg: EmbeddedConfig, nj: int = 1) -> Sources:
    """Synthesize speech and noise under ``out/audio`` and return the corpus Sources."""
    synth_speech.check_espeak()
    voices = synth_speech.speaker_voices()[: cfg.num_speakers]
    speech_dir = (out / "audio" / "speech").absolute()
    noise_dir = (out / "audio" / "noise").absolute()
    jobs = [
        ("speaker", (speaker_id(i), v, cfg.minutes_per_speaker * 60, cfg, speech_dir))
        for i, v in enumerate(voices)
    ]
    for bank in NOISE_BANKS:
        for family in synth_noise.BANK_FAMILIES[bank]:
            jobs += [("noise", (bank, family, i, cfg, noise_dir)) for i in range(files_per_family(bank, cfg))]
    # Slow jobs first (speakers, then babble) so the workers finish together.
    jobs.sort(key=lambda j: 0 if j[0] == "speaker" else 1 if j[1][1] in ("babble", "crowd") else 2)
    logging.info(
        "embedded corpus: %d speakers, %d noise files, %d worker(s)", len(voices), len(jobs) - len(voices), nj
    )
    speakers, noise = {}, {bank: [] for bank in NOISE_BANKS}
    for kind, result in parallel_map(_run, jobs, nj, desc="embedded corpus"):
        if kind == "speaker":
            speakers[result[0].label] = result
        else:
            noise[result.key.split("-", 1)[0]].append(result)
    for bank in noise:
        noise[bank].sort(key=lambda i: i.key)
    ids = [speaker_id(i) for i in range(cfg.num_speakers)]
    nt, nv = cfg.num_target, cfg.num_validation
    roles = {"target": ids[:nt], "validation": ids[nt : nt + nv], "generalist": ids[nt + nv :]}
    info = {speaker_id(i): {"gender": v.gender, "voice": v.describe()} for i, v in enumerate(voices)}
    return Sources("embedded", speakers, roles, noise, info)
