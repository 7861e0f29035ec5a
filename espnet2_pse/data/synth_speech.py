"""Synthetic speakers made with espeak-ng, for the embedded (offline) corpus.

A speaker is an espeak-ng voice (English accent + a voice variant that sets formants, pitch
range and breathiness) plus a base pitch and speaking rate. Utterances read sentences from
``resources/sentences.txt`` (1,500 sentences generated from word lists written for this
project; 9-31 words, so about 3-11 s of speech), with small per-utterance pitch/rate jitter.
espeak-ng renders 22,050 Hz audio, resampled here to 16 kHz with scipy's polyphase filter.
"""

import io
import shutil
import subprocess
from dataclasses import dataclass
from importlib import resources
from typing import List, Sequence

import numpy as np
import soundfile as sf

from espnet2_pse.data.audio import SAMPLE_RATE, resample

ESPEAK = "espeak-ng"

_ACCENTS = (
    "en-us",
    "en-gb-x-rp",
    "en-gb-scotland",
    "en-029",
    "en-us-nyc",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
)
_FEMALE = (
    "f1",
    "f2",
    "f3",
    "f4",
    "f5",
    "Annie",
    "belinda",
    "linda",
    "aunty",
    "Alicia",
    "Andrea",
    "anika",
    "grandma",
    "steph",
    "steph2",
    "steph3",
)
_MALE = (
    "m1",
    "m2",
    "m3",
    "m4",
    "m5",
    "m6",
    "m7",
    "m8",
    "Andy",
    "Denis",
    "Henrique",
    "Hugo",
    "Lee",
    "Marco",
    "michel",
    "travis",
)
# Babble talkers read English with other languages' voices, so they never sound like a target.
BABBLE_TRAIN_LANGS = ("de", "fr-fr", "es", "it")
BABBLE_TEST_LANGS = ("nl", "pl", "pt-br", "sv", "da", "fi")


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker: espeak-ng voice name, pitch (0-99) and rate (words per minute)."""

    name: str
    pitch: int
    speed: int
    gender: str

    def describe(self) -> str:
        return f"{self.name} -p {self.pitch} -s {self.speed}"


def speaker_voices() -> List[Voice]:
    """The 32 embedded speakers, alternating F/M and cycling accents (no two alike)."""
    voices = []
    for k in range(2 * len(_FEMALE)):
        female = k % 2 == 0
        variant = (_FEMALE if female else _MALE)[k // 2]
        accent = _ACCENTS[k % len(_ACCENTS)]
        # Spread base pitch and rate over their ranges with co-prime strides.
        pitch = (45 if female else 20) + (k * 7) % 30
        speed = 135 + (k * 11) % 45
        voices.append(Voice(f"{accent}+{variant}", pitch, speed, "F" if female else "M"))
    return voices


def check_espeak() -> None:
    """Fail early, with the install hint, when espeak-ng is missing."""
    if shutil.which(ESPEAK) is None:
        raise RuntimeError(
            "espeak-ng was not found on PATH; the embedded corpus needs it "
            "(Debian/Ubuntu: apt-get install espeak-ng)"
        )


def load_sentences() -> List[str]:
    text = resources.files("espnet2_pse.data").joinpath("resources/sentences.txt").read_text("utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def synthesize(
    text: str,
    voice: str,
    pitch: int,
    speed: int,
    sample_rate: int = SAMPLE_RATE,
) -> np.ndarray:
    """Render ``text`` with espeak-ng; returns (T,) float32 at ``sample_rate``."""
    cmd = [ESPEAK, "-v", voice, "-p", str(int(pitch)), "-s", str(int(speed)), "--stdout", text]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0 or len(proc.stdout) <= 44:
        raise RuntimeError(
            f"espeak-ng failed for voice {voice}: {proc.stderr.decode(errors='replace').strip()}"
        )
    x, sr = sf.read(io.BytesIO(proc.stdout), dtype="float32")
    return resample(x, sr, sample_rate)


def utterance(text: str, voice: Voice, rng: np.random.Generator, level: float) -> np.ndarray:
    """One utterance of ``voice`` with per-utterance jitter; peak scaled to about ``level``."""
    pitch = int(np.clip(voice.pitch + rng.integers(-4, 5), 0, 99))
    speed = int(voice.speed * rng.uniform(0.93, 1.07))
    x = synthesize(text, voice.name, pitch, speed)
    gain_db = rng.uniform(-1.5, 1.5)
    return (x * (level * 10 ** (gain_db / 20) / max(np.abs(x).max(), 1e-6))).astype(np.float32)


def talker_stream(
    seconds: float,
    langs: Sequence[str],
    sentences: Sequence[str],
    rng: np.random.Generator,
    sample_rate: int = SAMPLE_RATE,
) -> np.ndarray:
    """A babble talker: one random voice reading random sentences back to back, (T,) float32."""
    lang = langs[rng.integers(len(langs))]
    variant = (_FEMALE + _MALE)[rng.integers(len(_FEMALE) + len(_MALE))]
    voice = Voice(f"{lang}+{variant}", int(rng.integers(15, 80)), int(rng.integers(130, 190)), "?")
    need = int(seconds * sample_rate)
    parts: List[np.ndarray] = []
    total = 0
    while total < need:
        x = utterance(sentences[rng.integers(len(sentences))], voice, rng, 0.5)
        pause = np.zeros(int(rng.uniform(0.05, 0.4) * sample_rate), dtype=np.float32)
        parts += [x, pause]
        total += len(x) + len(pause)
    stream = np.concatenate(parts)
    offset = int(rng.integers(0, len(stream) - need + 1))
    return stream[offset : offset + need]


def pick_sentences(sentences: Sequence[str], rng: np.random.Generator) -> List[str]:
    """A speaker's reading order: all sentences, shuffled."""
    return [sentences[i] for i in rng.permutation(len(sentences))]
