"""The pretrained GE2E encoder of Resemblyzer's wheel as a speaker teacher (``resemblyzer`` tag).

Its batched call must give each row what the one-utterance path gives (which
test/scoring/test_perceptual.py checks against Resemblyzer itself), tell espeak-ng voices apart,
and serve the distillation and the EER entry point offline.
"""

import subprocess

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch

from espnet2_pse.spk.ge2e import GE2E
from espnet2_pse.spk.teacher import FrozenTeacher, load_teacher
from test.spk.conftest import load_yaml

FS = 16000


@pytest.fixture(scope="module")
def voices(tmp_path_factory):
    """Two utterances of one espeak-ng voice, one of another; and their data dir."""
    root = tmp_path_factory.mktemp("ge2e_voices")
    texts = {"a_u0": ("en", "the quick brown fox jumps over the lazy dog"),
             "a_u1": ("en", "she sells sea shells by the sea shore"),
             "b_u0": ("en+f3", "a different person is talking in the room"),
             "b_u1": ("en+f3", "nobody expected the weather to change so fast")}
    wavs = {}
    for key, (voice, text) in texts.items():
        raw = root / f"{key}_raw.wav"
        subprocess.run(["espeak-ng", "-w", str(raw), "-v", voice, text], check=True)
        x, fs = sf.read(str(raw), dtype="float32")
        wavs[key] = soxr.resample(x, fs, FS).astype(np.float32)
        sf.write(root / f"{key}.wav", wavs[key], FS)
    (root / "wav.scp").write_text("".join(f"{k} {root / k}.wav\n" for k in wavs))
    (root / "utt2spk").write_text("".join(f"{k} {k[0]}\n" for k in wavs))
    return wavs, root


def test_batched_teacher_matches_one_utterance_path_and_ignores_padding(voices):
    wavs, _ = voices
    teacher = FrozenTeacher(load_teacher(model_tag="resemblyzer"))
    keys = ["a_u0", "b_u0"]
    length = max(len(wavs[k]) for k in keys)
    batch = torch.zeros(2, length)
    for i, k in enumerate(keys):
        batch[i, :len(wavs[k])] = torch.from_numpy(wavs[k])
    lengths = torch.tensor([len(wavs[k]) for k in keys])
    embeddings = teacher.embed(batch, lengths)
    assert embeddings.shape == (2, 256) and not embeddings.requires_grad
    single = GE2E()
    for i, k in enumerate(keys):
        np.testing.assert_allclose(embeddings[i].numpy(), single.embed(wavs[k]), atol=1e-5)
    assert all(not p.requires_grad for p in teacher.model.parameters())


def test_teacher_tells_voices_apart(voices):
    wavs, _ = voices
    teacher = FrozenTeacher(load_teacher(model_tag="resemblyzer"))
    e = {k: teacher.embed(torch.from_numpy(w)[None])[0] for k, w in wavs.items()}
    same = float(e["a_u0"] @ e["a_u1"])
    other = float(e["a_u0"] @ e["b_u0"])
    assert same > other + 0.05


def test_teacher_rejects_what_it_cannot_embed():
    model = load_teacher(model_tag="resemblyzer")
    with pytest.raises(ValueError, match="only extracts embeddings"):
        model(torch.zeros(1, FS), None, extract_embd=False)
    with pytest.raises(ValueError, match=r"expected \(batch, samples\) waveforms"):
        model(torch.zeros(FS))


def test_spk_eer_runs_with_the_offline_teacher(voices, tmp_path):
    from espnet2_pse.bin.spk_eer import main

    _, root = voices
    result = main(["--data_dir", str(root), "--model_type", "teacher", "--model_tag", "resemblyzer",
                   "--output_file", str(tmp_path / "eer.yaml")])
    assert load_yaml(tmp_path / "eer.yaml") == result
    assert result["model"] == "resemblyzer" and result["n_target"] == 2
    assert result["eer"] < 0.5


def test_student_distils_from_the_offline_teacher(spk_corpus, tmp_path):
    from espnet2.train.reporter import Reporter

    from espnet2_pse.bin.spk_distill_train import main
    from espnet2_pse.tasks.spk_distill import SpkDistillTask

    out, data = tmp_path / "exp", spk_corpus["dir"]
    args = ["--output_dir", out, "--ngpu", 0, "--num_workers", 0, "--seed", 0,
            "--use_tensorboard", "false", "--use_matplotlib", "false",
            "--max_epoch", 1, "--batch_type", "unsorted", "--batch_size", 4,
            "--teacher_model_tag", "resemblyzer", "--student_conf", "embed_dim=256",
            "--kd_loss_conf", "temperature=0.1",
            "--noise_scp", spk_corpus["noise_scp"], "--teacher_crop_s", 1.0,
            "--model_conf", "student_min_s=0.5", "--model_conf", "student_max_s=1.0",
            "--train_shape_file", data / "wav.scp", "--valid_shape_file", data / "wav.scp"]
    for split in ("train", "valid"):
        args += [f"--{split}_data_path_and_name_and_type", f"{data}/wav.scp,speech,sound",
                 f"--{split}_data_path_and_name_and_type", f"{data}/utt2spk,spk_labels,text"]
    main(cmd=[str(a) for a in args])
    reporter = Reporter()
    reporter.load_state_dict(torch.load(out / "checkpoint.pth", map_location="cpu", weights_only=False)["reporter"])
    for mode in ("train", "valid"):
        # 12 utterances in batches of 4: InfoNCE starts near log(4).
        loss = reporter.get_value(mode, "loss", epoch=1)
        assert np.isfinite(loss) and 0 < loss < 3 * np.log(4), (mode, loss)
    student = SpkDistillTask.build_student_from_file(out / "config.yaml", out / "valid.loss.best.pth", "cpu")
    assert student(torch.randn(1, FS)).shape == (1, 256)
