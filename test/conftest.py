"""Shared fixtures: tiny synthetic audio data dirs made in the test's tmp dir."""

import os
from pathlib import Path
from typing import Dict

import numpy as np
import pytest
import soundfile

import espnet2_pse  # noqa: F401  (first: the quiet ESPnet import applies to every test)

FS = 16000

# Tests run the package's entry points in subprocesses; keep them single-threaded and quiet.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def synth_voice(rng: np.random.Generator, seconds: float, f0: float) -> np.ndarray:
    """Speech-like signal: harmonics of a wobbling f0 under a syllable-rate envelope."""
    t = np.arange(int(seconds * FS)) / FS
    pitch = f0 * (1 + 0.05 * np.sin(2 * np.pi * rng.uniform(2, 5) * t))
    phase = 2 * np.pi * np.cumsum(pitch) / FS
    voice = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = np.clip(np.sin(2 * np.pi * rng.uniform(3, 5) * t + rng.uniform(0, 6)), 0, None)
    return (0.3 * voice * envelope / 3).astype(np.float32)


def write_scp(path: Path, entries: Dict[str, Path]) -> Path:
    path.write_text("".join(f"{k} {v}\n" for k, v in sorted(entries.items())))
    return path


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Dict[str, Path]:
    """A few clean utterances, noise clips, and noisy mixtures of one voice.

    Returns paths: dir (data dir with wav.scp = noisy mix, spk1.scp = clean), clean_scp,
    noise_scp.
    """
    root = tmp_path_factory.mktemp("tiny_corpus")
    rng = np.random.default_rng(0)
    audio = root / "audio"
    audio.mkdir()
    clean, mix, noise = {}, {}, {}
    for i in range(4):
        key = f"spkA_utt{i}"
        speech = synth_voice(rng, rng.uniform(1.0, 1.5), f0=140.0)
        background = (0.05 * rng.standard_normal(speech.shape)).astype(np.float32)
        soundfile.write(audio / f"{key}.wav", speech, FS)
        soundfile.write(audio / f"{key}_mix.wav", speech + background, FS)
        clean[key], mix[key] = audio / f"{key}.wav", audio / f"{key}_mix.wav"
    for i in range(3):
        key = f"noise{i}"
        soundfile.write(audio / f"{key}.wav", (0.1 * rng.standard_normal(FS * 2)).astype(np.float32), FS)
        noise[key] = audio / f"{key}.wav"
    data = root / "data"
    data.mkdir()
    write_scp(data / "wav.scp", mix)
    write_scp(data / "spk1.scp", clean)
    (data / "utt2spk").write_text("".join(f"{k} spkA\n" for k in sorted(clean)))
    return {
        "dir": data,
        "clean_scp": data / "spk1.scp",
        "noise_scp": write_scp(root / "noise.scp", noise),
    }


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module of tiny models: on a shared machine two busy threads are
    about ten times slower than one. Use with ``pytestmark = pytest.mark.usefixtures(...)``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
