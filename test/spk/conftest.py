"""Fixtures for the speaker-encoder tests: toy voices, noise, and a tiny stand-in teacher.

The teacher here is a *randomly initialised* tiny ECAPA-TDNN ESPnet speaker model, saved the
way espnet2.bin.spk_train saves one (config.yaml + .pth). It stands in for a trained teacher:
the tests check the distillation machinery, not the teacher's quality.
"""

import argparse
from pathlib import Path
from typing import Dict

import numpy as np
import pytest
import soundfile
import torch
import yaml

from test.conftest import FS, synth_voice, write_scp

TINY_TEACHER = dict(
    frontend="melspec_torch",
    frontend_conf=dict(n_mels=40, log=True, normalize="mn"),
    encoder="ecapa_tdnn",
    encoder_conf=dict(ndim=32, model_scale=4, output_size=48),
    pooling="chn_attn_stat",
    projector="rawnet3",
    projector_conf=dict(output_size=192),
    loss="aamsoftmax",
    spk_num=4,
)

# One f0 per toy "speaker"; far apart so that a student can tell them apart quickly.
SPEAKER_F0 = {"spkA": 100.0, "spkB": 160.0, "spkC": 230.0, "spkD": 320.0}


@pytest.fixture(scope="session")
def teacher_files(tmp_path_factory) -> Dict[str, Path]:
    """{"config": config.yaml, "model": teacher.pth} of the tiny random ECAPA teacher."""
    import espnet2_pse  # noqa: F401
    from espnet2.tasks.spk import SpeakerTask
    from espnet2.utils.yaml_no_alias_safe_dump import yaml_no_alias_safe_dump

    root = tmp_path_factory.mktemp("teacher")
    args = vars(SpeakerTask.get_parser().parse_args([]))
    args.update(TINY_TEACHER)
    torch.manual_seed(0)
    model = SpeakerTask.build_model(argparse.Namespace(**args))
    with (root / "config.yaml").open("w") as f:
        yaml_no_alias_safe_dump(args, f)
    torch.save(model.state_dict(), root / "teacher.pth")
    return {"config": root / "config.yaml", "model": root / "teacher.pth"}


@pytest.fixture(scope="session")
def spk_corpus(tmp_path_factory) -> Dict[str, Path]:
    """4 toy speakers x 3 utterances of 1.5 s, and 2 noise clips.

    Returns: dir (wav.scp, utt2spk, spk2utt), noise_scp.
    """
    root = tmp_path_factory.mktemp("spk_corpus")
    rng = np.random.default_rng(0)
    wavs, utt2spk, noises = {}, {}, {}
    for spk, f0 in SPEAKER_F0.items():
        for i in range(3):
            key = f"{spk}_u{i}"
            path = root / f"{key}.wav"
            soundfile.write(path, synth_voice(rng, 1.5, f0 * rng.uniform(0.97, 1.03)), FS)
            wavs[key], utt2spk[key] = path, spk
    for i in range(2):
        path = root / f"noise{i}.wav"
        soundfile.write(path, (0.1 * rng.standard_normal(FS)).astype(np.float32), FS)
        noises[f"noise{i}"] = path
    data = root / "data"
    data.mkdir()
    write_scp(data / "wav.scp", wavs)
    write_scp(data / "utt2spk", utt2spk)
    (data / "spk2utt").write_text(
        "".join(
            f"{s} {' '.join(sorted(k for k in utt2spk if utt2spk[k] == s))}\n"
            for s in sorted(SPEAKER_F0)
        )
    )
    return {"dir": data, "noise_scp": write_scp(root / "noise.scp", noises)}


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(Path(path).read_text())
