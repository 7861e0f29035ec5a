"""Fixtures of the user-command tests: one synthetic voice, user folders, a tiny model dir."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

FS = 16000
VOICE_F0 = 140.0
# Options for prepare_data that build the smallest embedded corpus (noise banks) quickly.
TINY_DATA_OPTS = (
    "--num_speakers 3 --num_target 1 --num_validation 1 --minutes_per_speaker 0.6 "
    "--noise_files_per_family 2 --split_scale 0.1 --test_mixtures 2 --val_mixtures 8"
)


def voice(rng: np.random.Generator, seconds: float, fs: int = FS, f0: float = VOICE_F0) -> np.ndarray:
    """The test speaker: harmonics of a wobbling f0 under a syllable-rate envelope, peak ~0.3."""
    t = np.arange(int(seconds * fs)) / fs
    pitch = f0 * (1 + 0.06 * np.sin(2 * np.pi * rng.uniform(2, 5) * t + rng.uniform(0, 6)))
    phase = 2 * np.pi * np.cumsum(pitch) / fs
    harmonics = sum(np.sin(k * phase) / k for k in range(1, 12) if k * f0 < 0.45 * fs)
    envelope = np.clip(np.sin(2 * np.pi * rng.uniform(3, 5) * t + rng.uniform(0, 6)), 0, None) ** 0.7
    return (0.1 * harmonics * envelope).astype(np.float32)


def mix_at(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    gain = np.sqrt(np.sum(speech ** 2) / (np.sum(noise ** 2) * 10 ** (snr_db / 10)))
    return (speech + gain * noise).astype(np.float32)


def si_sdr(estimate: np.ndarray, reference: np.ndarray) -> float:
    """Scale-invariant SDR in dB of a (T,) estimate against a (T,) reference."""
    reference = reference - reference.mean()
    estimate = estimate - estimate.mean()
    target = np.dot(estimate, reference) / np.dot(reference, reference) * reference
    return float(10 * np.log10(np.sum(target ** 2) / np.sum((estimate - target) ** 2)))


def write_user_recordings(folder: Path, seed: int = 0) -> Path:
    """The person's own recordings: the voice + a soft hum/rumble, in mixed rates/channels/formats."""
    rng = np.random.default_rng(seed)
    layout = [  # (relative path, rate, channels, seconds)
        ("phone/call1.wav", 8000, 1, 9.0), ("phone/call2.flac", 8000, 1, 8.0),
        ("desk/memo1.wav", 16000, 1, 8.0), ("desk/memo2.flac", 16000, 2, 9.0),
        ("cam/clip1.wav", 44100, 2, 8.0), ("cam/clip2.flac", 44100, 1, 8.0),
        ("memo3.wav", 16000, 1, 8.0), ("memo4.wav", 44100, 1, 8.0),
    ]
    for rel, fs, channels, seconds in layout:
        speech = voice(rng, seconds, fs)
        t = np.arange(speech.shape[0]) / fs
        room = np.sin(2 * np.pi * 50 * t) + 0.3 * np.cumsum(rng.standard_normal(t.shape)) / np.sqrt(fs)
        x = mix_at(speech, room, snr_db=20.0)
        data = np.stack([x, 0.8 * x], axis=1) if channels == 2 else x
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), data, fs)
    return folder


def build_tiny_model_dir(out: Path, separator_conf: dict, seed: int = 0, separator: str = "conv_tasnet_skip") -> Path:
    """config.yaml + model.pth of an untrained small separator (random weights), as a model dir."""
    from espnet2_pse.tasks.pse import PSETask

    config = {
        "encoder": "conv", "encoder_conf": {"channel": 32, "kernel_size": 16, "stride": 8},
        "decoder": "conv", "decoder_conf": {"channel": 32, "kernel_size": 16, "stride": 8},
        "separator": separator, "separator_conf": separator_conf,
        "criterions": [{"name": "pse_distance", "conf": {"distance": "snr"}, "wrapper": "fixed_order",
                        "wrapper_conf": {"weight": 1.0}}],
        "use_tensorboard": False, "use_matplotlib": False,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "train.yaml").write_text(yaml.safe_dump(config))
    PSETask.main(cmd=[
        "--config", str(out / "train.yaml"), "--dry_run", "true", "--output_dir", str(out),
        "--train_data_path_and_name_and_type", "x,speech_mix,sound", "--train_shape_file", "x",
        "--valid_data_path_and_name_and_type", "x,speech_mix,sound", "--valid_shape_file", "x",
    ])
    model, _ = PSETask.build_model_from_file(out / "config.yaml", None, "cpu")
    # Random weights far from the init, so that the masks depend on the input.
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=generator))
    torch.save(model.state_dict(), out / "model.pth")
    return out


@pytest.fixture(scope="session")
def local_model(tmp_path_factory) -> Path:
    """A model whose every layer is local in time (per-frame norms): chunking can match it."""
    return build_tiny_model_dir(
        tmp_path_factory.mktemp("local_model"),
        {"layer": 4, "stack": 1, "bottleneck_dim": 16, "hidden_dim": 32, "skip_dim": 16, "norm_type": "chLN"},
    )
