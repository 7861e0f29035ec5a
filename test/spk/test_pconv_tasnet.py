"""PConvTasNet: conditioning changes the output, parameter growth, errors, PSETask round trip."""

import numpy as np
import pytest
import torch
import yaml

from espnet2_pse.separators.conv_tasnet_skip import ConvTasNetSkip
from espnet2_pse.separators.pconv_tasnet import PConvTasNet
from espnet2_pse.spk.complexity import count_parameters
from test.spk.conftest import load_yaml

N, D = 32, 192
SIZES = dict(layer=3, stack=2, bottleneck_dim=8, hidden_dim=16, skip_dim=16)


def run(separator, feats, embedding):
    with torch.no_grad():
        masked, _, _ = separator(feats, torch.tensor([feats.size(1)] * len(feats)),
                                 {"enroll_ref1": embedding})
    return masked[0]


@pytest.mark.parametrize("fusion", ["film", "concat"])
def test_output_follows_the_embedding(fusion):
    torch.manual_seed(0)
    separator = PConvTasNet(N, fusion=fusion, **SIZES).eval()
    # Both fusions start without effect (zero weights); give them values.
    if fusion == "concat":
        for block in separator.blocks:
            torch.nn.init.normal_(block.in_conv.weight)
    else:
        for layer in separator.film:
            torch.nn.init.normal_(layer.weight, std=0.1)
    feats = torch.rand(2, 50, N)
    e1, e2 = torch.randn(2, D), torch.randn(2, D)
    out1, out2 = run(separator, feats, e1), run(separator, feats, e2)
    assert out1.shape == feats.shape
    assert (out1 - out2).abs().max() > 1e-3
    assert torch.allclose(out1, run(separator, feats, e1))
    # Only the direction counts (embeddings are L2-normalised), and (B, 1, D) is accepted.
    assert torch.allclose(out1, run(separator, feats, 3.0 * e1[:, None]), atol=1e-5)


@pytest.mark.parametrize("fusion", ["film", "concat"])
def test_starts_as_the_unconditioned_network_it_can_be_initialised_from(fusion):
    """At initialisation the conditioning does nothing, so a plain generalist's weights
    (ESPnet --init_param) give exactly its outputs, magnitude compression included."""
    torch.manual_seed(0)
    plain = ConvTasNetSkip(N, magnitude_exponent=0.3, **SIZES).eval()
    conditioned = PConvTasNet(N, magnitude_exponent=0.3, fusion=fusion, **SIZES).eval()
    state = conditioned.state_dict()
    for key, value in plain.state_dict().items():
        # concat widens the first 1x1 conv: the plain weights fill its first input channels.
        state[key] = torch.cat([value, state[key][:, value.size(1):]], dim=1) if state[key].shape != value.shape else value
    conditioned.load_state_dict(state)
    feats = torch.rand(2, 50, N)
    with torch.no_grad():
        expected = plain(feats, torch.tensor([50, 50]))[0][0]
    assert conditioned.magnitude_exponent == 0.3
    assert torch.allclose(run(conditioned, feats, torch.randn(2, D)), expected, atol=1e-6)


def test_parameter_growth_matches_the_fusion():
    base = count_parameters(ConvTasNetSkip(N, **SIZES))
    blocks, B, H = SIZES["layer"] * SIZES["stack"], SIZES["bottleneck_dim"], SIZES["hidden_dim"]
    film = count_parameters(PConvTasNet(N, fusion="film", **SIZES))
    concat = count_parameters(PConvTasNet(N, fusion="concat", **SIZES))
    assert film - base == blocks * 2 * B * (D + 1)
    assert concat - base == blocks * D * H


def test_enrollment_audio_through_a_frozen_internal_student():
    torch.manual_seed(0)
    separator = PConvTasNet(N, speaker_encoder={"channels": 16, "attention_channels": 8}, **SIZES)
    separator.train()
    assert not separator.speaker_encoder.training
    assert all(not p.requires_grad for p in separator.speaker_encoder.parameters())
    feats = torch.rand(2, 40, N)
    enroll = torch.randn(2, 16000)
    additional = {"enroll_ref1": enroll, "enroll_ref1_lengths": torch.tensor([16000, 9000])}
    masked, _, _ = separator(feats, torch.tensor([40, 40]), additional)
    assert masked[0].shape == feats.shape


def test_missing_or_malformed_enrollment_is_reported():
    separator = PConvTasNet(N, **SIZES)
    feats, lens = torch.rand(2, 20, N), torch.tensor([20, 20])
    with pytest.raises(ValueError, match="enroll_ref1"):
        separator(feats, lens, {})
    with pytest.raises(ValueError, match=r"\(B, 192\)"):
        separator(feats, lens, {"enroll_ref1": torch.randn(2, 16000)})
    with pytest.raises(ValueError, match="rows"):
        separator(feats, lens, {"enroll_ref1": torch.randn(3, D)})
    with pytest.raises(ValueError, match="fusion"):
        PConvTasNet(N, fusion="add", **SIZES)


PSE_CONFIG = {
    "encoder": "conv", "encoder_conf": {"channel": N, "kernel_size": 16, "stride": 8},
    "decoder": "conv", "decoder_conf": {"channel": N, "kernel_size": 16, "stride": 8},
    "separator": "pconv_tasnet",
    "separator_conf": {**SIZES, "embed_dim": D, "fusion": "film"},
    "criterions": [{"name": "si_snr", "conf": {"eps": 1.0e-7}, "wrapper": "fixed_order",
                    "wrapper_conf": {"weight": 1.0}}],
    "optim": "adam", "max_epoch": 1, "batch_type": "unsorted", "batch_size": 2,
    "num_workers": 0, "use_tensorboard": False, "use_matplotlib": False, "seed": 0,
}


def test_trains_one_epoch_with_pse_train_and_reloads_from_a_packed_zip(tiny_corpus, tmp_path):
    """Enrollment = precomputed (npy) embeddings, as an ``enroll_spk1.scp`` of the data dir."""
    from espnet2.bin.pack import main as pack
    from espnet2.main_funcs.pack_funcs import unpack

    from espnet2_pse.bin.pse_train import main as pse_train
    from espnet2_pse.tasks.pse import PSETask

    data = tiny_corpus["dir"]
    keys = [line.split()[0] for line in (data / "wav.scp").read_text().splitlines()]
    rng = np.random.default_rng(0)
    lines = []
    for key in keys:
        np.save(tmp_path / f"{key}.npy", rng.standard_normal(D).astype(np.float32))
        lines.append(f"{key} {tmp_path / key}.npy\n")
    (tmp_path / "enroll_spk1.scp").write_text("".join(lines))
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(PSE_CONFIG))
    data_args = []
    for split in ("train", "valid"):
        data_args += [
            f"--{split}_data_path_and_name_and_type", f"{data}/wav.scp,speech_mix,sound",
            f"--{split}_data_path_and_name_and_type", f"{data}/spk1.scp,speech_ref1,sound",
            f"--{split}_data_path_and_name_and_type", f"{tmp_path}/enroll_spk1.scp,enroll_ref1,npy",
            f"--{split}_shape_file", str(data / "wav.scp"),
        ]
    exp = tmp_path / "exp"
    pse_train(cmd=["--config", str(tmp_path / "config.yaml"), "--output_dir", str(exp), *data_args])
    assert load_yaml(exp / "config.yaml")["separator"] == "pconv_tasnet"
    assert (exp / "1epoch.pth").is_file()

    pack(cmd=["enh", "--train_config", str(exp / "config.yaml"),
              "--model_file", str(exp / "1epoch.pth"), "--outpath", str(tmp_path / "model.zip")])
    files = unpack(tmp_path / "model.zip", tmp_path / "unpacked")
    model, _ = PSETask.build_model_from_file(files["train_config"], files["model_file"])
    assert isinstance(model.separator, PConvTasNet)
    trained = torch.load(exp / "1epoch.pth", map_location="cpu")
    for name, value in model.state_dict().items():
        assert torch.equal(value, trained[name]), name
    model.eval()
    mix, emb = torch.randn(1, 8000), torch.randn(1, D)
    with torch.no_grad():
        out1 = model.forward_enhance(mix, torch.tensor([8000]), {"enroll_ref1": emb})[0][0]
        out2 = model.forward_enhance(mix, torch.tensor([8000]), {"enroll_ref1": -emb})[0][0]
    assert out1.shape == (1, 8000) and torch.isfinite(out1).all()
    assert (out1 - out2).abs().max() > 0
