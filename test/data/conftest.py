"""Shared fixtures for the data-layer tests: audio writers and one tiny embedded corpus."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

TINY_ARGS = [
    "--num_speakers",
    "5",
    "--num_target",
    "2",
    "--num_validation",
    "1",
    "--minutes_per_speaker",
    "0.6",
    "--noise_files_per_family",
    "1",
    "--split_scale",
    "0.1",
    "--test_mixtures",
    "6",
    "--val_mixtures",
    "4",
    "--nj",
    "2",
]


def write_audio(path, seconds, sr=16000, channels=1, subtype="PCM_16", amp=0.3, seed=0, fmt=None):
    """A speech-like test signal (harmonic tone with a noise floor), written with soundfile."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    x = amp * (0.6 * np.sin(2 * np.pi * (150 + 20 * seed) * t) + 0.2 * rng.standard_normal(n))
    x = np.clip(x, -0.95, 0.95)
    data = np.stack([x * (1.0 - 0.25 * c) for c in range(channels)], axis=1) if channels > 1 else x
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), data, sr, subtype=subtype, format=fmt)
    return path


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """A 5-speaker embedded corpus built once through the entry point."""
    from espnet2_pse.bin.prepare_data import main

    root = tmp_path_factory.mktemp("tiny") / "data"
    main(["--out", str(root)] + TINY_ARGS)
    return root


@pytest.fixture
def corpus_copy(tiny_corpus, tmp_path):
    """The tiny corpus's tables (not its audio) copied, so a test may add to it."""
    dst = tmp_path / "data"
    shutil.copytree(tiny_corpus, dst, ignore=shutil.ignore_patterns("audio"))
    return dst
