"""One speaker folded into a speaker-conditioned separator (espnet2_pse.spk.fold): the plain
network that results computes what the conditioned one computes with that speaker."""

import logging
import subprocess

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch
import yaml

from espnet2_pse.data.audio import load_audio
from espnet2_pse.inference.model_loading import ModelFiles
from espnet2_pse.separators.conv_tasnet_skip import ConvTasNetSkip
from espnet2_pse.separators.pconv_tasnet import PConvTasNet
from espnet2_pse.spk.fold import fold_embedding, fold_user_recordings
from espnet2_pse.spk.teacher import FrozenTeacher, load_teacher

N, D = 32, 256
SIZES = dict(layer=3, stack=2, bottleneck_dim=8, hidden_dim=16, skip_dim=16, magnitude_exponent=0.3)


def conditioned_model(fusion: str):
    """(config, state dict, separator) of a pconv_tasnet whose conditioning does something."""
    torch.manual_seed(0)
    separator = PConvTasNet(N, fusion=fusion, embed_dim=D, **SIZES).eval()
    layers = separator.film if fusion == "film" else [block.in_conv for block in separator.blocks]
    for layer in layers:
        torch.nn.init.normal_(layer.weight, std=0.1)
    config = {"separator": "pconv_tasnet", "separator_conf": {**SIZES, "embed_dim": D, "fusion": fusion},
              "train_data_path_and_name_and_type": [["a/spk1.scp", "speech_ref1", "sound"],
                                                    ["a/enroll_spk1.scp", "enroll_ref1", "npy"]]}
    state = {f"separator.{k}": v for k, v in separator.state_dict().items()}
    return config, state, separator


def plain_output(config, state, feats):
    plain = ConvTasNetSkip(N, **config["separator_conf"]).eval()
    plain.load_state_dict({k[len("separator."):]: v for k, v in state.items()})
    with torch.no_grad():
        return plain(feats, torch.tensor([feats.size(1)] * len(feats)))[0][0]


@pytest.mark.parametrize("fusion", ["film", "concat"])
def test_folded_network_computes_the_conditioned_output(fusion):
    config, state, separator = conditioned_model(fusion)
    feats = torch.rand(2, 60, N)
    e1, e2 = torch.randn(D), torch.randn(D)
    outputs = []
    for e in (e1, e2):
        plain_config, folded = fold_embedding(config, state, 3.0 * e)  # only the direction counts
        assert plain_config["separator"] == "conv_tasnet_skip"
        assert "embed_dim" not in plain_config["separator_conf"] and "fusion" not in plain_config["separator_conf"]
        assert plain_config["train_data_path_and_name_and_type"] == [["a/spk1.scp", "speech_ref1", "sound"]]
        with torch.no_grad():
            expected = separator(feats, torch.tensor([60, 60]), {"enroll_ref1": e[None].expand(2, D)})[0][0]
        outputs.append(plain_output(plain_config, folded, feats))
        torch.testing.assert_close(outputs[-1], expected, atol=1e-5, rtol=1e-4)
    assert (outputs[0] - outputs[1]).abs().max() > 1e-3  # the speaker is in the weights
    assert config["separator"] == "pconv_tasnet"  # the inputs are left as they were


def test_fold_refuses_what_it_cannot_fold():
    config, state, _ = conditioned_model("film")
    with pytest.raises(ValueError, match="128-dim embedding, but the model expects 256"):
        fold_embedding(config, state, np.ones(128))
    with pytest.raises(ValueError, match="only a 'pconv_tasnet' model"):
        fold_embedding({"separator": "conv_tasnet_skip"}, state, np.ones(D))
    internal = {**config, "separator_conf": {**config["separator_conf"], "speaker_encoder": {"channels": 16}}}
    with pytest.raises(ValueError, match="its own speaker_encoder"):
        fold_embedding(internal, state, np.ones(D))


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    """Three recordings of one espeak-ng voice (the last at 22.05 kHz), and a broken file."""
    root = tmp_path_factory.mktemp("fold_voice")
    paths = []
    for i, text in enumerate(["the quick brown fox jumps over the lazy dog",
                              "she sells sea shells by the sea shore", "nobody expected the weather to change"]):
        raw = root / f"raw{i}.wav"
        subprocess.run(["espeak-ng", "-w", str(raw), "-v", "en", text], check=True)
        x, fs = sf.read(str(raw), dtype="float32")
        paths.append(root / f"u{i}.wav")
        rate = 22050 if i == 2 else 16000
        sf.write(paths[-1], soxr.resample(x, fs, rate).astype(np.float32), rate)
    (root / "broken.wav").write_bytes(b"RIFF not audio")
    return paths, root / "broken.wav"


def test_user_recordings_folded_with_the_packed_teacher(recordings, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    paths, broken = recordings
    config, state, separator = conditioned_model("film")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    torch.save(state, tmp_path / "model.pth")
    (tmp_path / "tag.yaml").write_text("model_tag: resemblyzer\n")
    files = ModelFiles(tmp_path / "config.yaml", tmp_path / "model.pth", {"spk_teacher_tag": tmp_path / "tag.yaml"})
    folded = fold_user_recordings(files, paths, tmp_path / "folded", 16000)
    centroid = np.load(tmp_path / "folded" / "speaker_embedding.npy")
    teacher = FrozenTeacher(load_teacher(model_tag="resemblyzer"))
    each = [teacher.embed(torch.from_numpy(load_audio(p, 16000))[None])[0].numpy() for p in paths]
    assert np.linalg.norm(centroid) == pytest.approx(1.0, abs=1e-5)
    consistency = float(np.mean(np.stack(each) @ centroid))
    assert consistency > 0.7 and f"(their mean cosine to it: {consistency:.2f})" in caplog.text
    feats = torch.rand(1, 40, N)
    with torch.no_grad():
        expected = separator(feats, torch.tensor([40]), {"enroll_ref1": torch.from_numpy(centroid)[None]})[0][0]
    plain_config = yaml.safe_load(folded.train_config.read_text())
    torch.testing.assert_close(plain_output(plain_config, torch.load(folded.model_file), feats), expected,
                               atol=1e-5, rtol=1e-4)
    # A rerun on the same model and recordings reuses the fold; other recordings refold.
    caplog.clear()
    assert fold_user_recordings(files, paths, tmp_path / "folded", 16000) == folded
    assert "reusing its fold" in caplog.text and "mean cosine" not in caplog.text
    fold_user_recordings(files, paths[:2], tmp_path / "folded", 16000)
    assert "mean cosine" in caplog.text
    assert not np.allclose(np.load(tmp_path / "folded" / "speaker_embedding.npy"), centroid)
    with pytest.raises(ValueError, match="broken.wav: cannot be decoded"):
        fold_user_recordings(files, [paths[0], broken], tmp_path / "again", 16000)
    with pytest.raises(ValueError, match="no audio to embed"):
        fold_user_recordings(files, [], tmp_path / "again", 16000)
    with pytest.raises(ValueError, match="needs the speaker teacher it was trained with"):
        fold_user_recordings(ModelFiles(files.train_config, files.model_file), paths, tmp_path / "again", 16000)


def test_fold_speaker_writes_a_plain_model_that_enhances_as_the_conditioned_one(recordings, tmp_path, caplog):
    """The CLI folds the centroid of the enrollment files into a zip that loads without
    --enroll, runs on the fast path and matches the conditioned model given that centroid."""
    import espnet2_pse
    from espnet2_pse.bin import fold_speaker

    paths, broken = recordings
    base = tmp_path / "conditioned"
    write_conditioned_pack(base)
    folder = paths[0].parent
    out = tmp_path / "mine.zip"
    assert fold_speaker.main(["--model", str(base), "--enroll", str(paths[0]), str(paths[1]), "--out", str(out)]) == 0
    mine = espnet2_pse.load(str(out))
    assert mine.engine.backend is not None  # a plain model: the fast path takes it
    teacher = FrozenTeacher(load_teacher(model_tag="resemblyzer"))
    each = np.stack([teacher.embed(torch.from_numpy(load_audio(p, 16000))[None])[0].numpy() for p in paths[:2]])
    centroid = each.mean(0) / np.linalg.norm(each.mean(0))
    conditioned = espnet2_pse.load(str(base), enroll=centroid)
    assert conditioned.engine.backend is None  # ESPnet's path: the enrollment is an extra input
    noisy = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    np.testing.assert_allclose(mine(noisy, 16000), conditioned(noisy, 16000), atol=1e-4)
    # Usage errors: exit 2 with the reason named, and nothing written.
    for argv, message in [(["--model", str(out), "--enroll", str(paths[0])], "is not speaker-conditioned"),
                          (["--model", str(base), "--enroll", str(tmp_path / "nowhere")], "no such file or folder"),
                          (["--model", str(base), "--enroll", str(broken)], "broken.wav: cannot be decoded"),
                          (["--model", str(base), "--enroll", str(folder), "--out", str(tmp_path / "x.onnx")],
                           "must be written as a .zip")]:
        argv = argv if "--out" in argv else argv + ["--out", str(tmp_path / "bad.zip")]
        assert fold_speaker.main(argv) == 2 and message in caplog.text
    assert not (tmp_path / "bad.zip").exists()


def write_conditioned_pack(folder):
    """An unpacked pack of a whole PSETask model (stft, pconv_tasnet with working FiLM) and the
    GE2E teacher's tag, as the recipe packs a conditioned generalist."""
    import argparse

    from espnet2_pse.tasks.pse import PSETask

    args = vars(PSETask.get_parser().parse_args([]))
    stft = {"n_fft": 62, "hop_length": 16}  # 32 bins = N
    args.update(encoder="stft", encoder_conf=stft, decoder="stft", decoder_conf=stft, separator="pconv_tasnet",
                separator_conf={**SIZES, "embed_dim": D, "fusion": "film"})
    torch.manual_seed(0)
    model = PSETask.build_model(argparse.Namespace(**args))
    for layer in model.separator.film:
        torch.nn.init.normal_(layer.weight, std=0.1)
    write_pack_with_teacher(folder, args, model.state_dict())


def write_pack_with_teacher(folder, config, state):
    """``folder`` as an unpacked pack of (config, state) with the GE2E teacher's tag beside."""
    from espnet2.utils.yaml_no_alias_safe_dump import yaml_no_alias_safe_dump

    folder.mkdir()
    with (folder / "config.yaml").open("w") as f:
        yaml_no_alias_safe_dump(config, f)
    torch.save(state, folder / "model.pth")
    (folder / "tag.yaml").write_text("model_tag: resemblyzer\n")
    (folder / "meta.yaml").write_text(yaml.safe_dump({"yaml_files": {"train_config": "config.yaml"},
                                                      "files": {"model_file": "model.pth", "spk_teacher_tag": "tag.yaml"}}))
