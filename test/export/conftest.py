"""Fixtures of the export tests: small ESPnet models in memory and as packed zips."""

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

FS = 16000
STFT_CONF = {"n_fft": 512, "win_length": 512, "hop_length": 128, "window": "hann"}
CONV_CONF = {"channel": 64, "kernel_size": 32, "stride": 16}
# Small TCN sizes: seconds to build and run, but every kind of layer is there.
SMALL_TCN = {"layer": 3, "stack": 2, "bottleneck_dim": 16, "hidden_dim": 32, "skip_dim": 16}


def perturb(model: torch.nn.Module, seed: int = 0, scale: float = 0.2) -> torch.nn.Module:
    """Random weights far from the init, so that the masks depend on the input."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=generator))
    return model.eval()


def enh_model(kind: str, separator_conf: dict, separator: str = "conv_tasnet_skip", seed: int = 0):
    """ESPnetEnhancementModel with a conv or stft encoder/decoder and random weights."""
    from espnet2.enh.decoder.conv_decoder import ConvDecoder
    from espnet2.enh.decoder.stft_decoder import STFTDecoder
    from espnet2.enh.encoder.conv_encoder import ConvEncoder
    from espnet2.enh.encoder.stft_encoder import STFTEncoder
    from espnet2.enh.espnet_model import ESPnetEnhancementModel

    from espnet2_pse.separators.conv_tasnet_skip import ConvTasNetSkip
    from espnet2_pse.separators.gru_mask import GRUMaskNet

    if kind == "conv":
        encoder, decoder = ConvEncoder(**CONV_CONF), ConvDecoder(**CONV_CONF)
    else:
        encoder, decoder = STFTEncoder(**STFT_CONF), STFTDecoder(**STFT_CONF)
    cls = {"conv_tasnet_skip": ConvTasNetSkip, "gru_mask": GRUMaskNet}[separator]
    sep = cls(encoder.output_dim, **separator_conf)
    return perturb(ESPnetEnhancementModel(encoder, sep, decoder, None, None), seed)


def espnet_output(model, x: np.ndarray) -> np.ndarray:
    """First output of ``model.forward_enhance`` on (T,) ``x``."""
    with torch.inference_mode():
        speech = torch.from_numpy(np.asarray(x, dtype=np.float32))[None]
        return model.forward_enhance(speech, torch.tensor([speech.shape[1]]))[0][0][0].numpy()


def make_signal(seconds: float, seed: int = 0) -> np.ndarray:
    """Voice-like harmonics with a level ramp and noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * FS)) / FS
    phase = 2 * np.pi * np.cumsum(140 * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))) / FS
    voice = sum(np.sin(k * phase) / k for k in range(1, 10)) * np.clip(np.sin(2 * np.pi * 4 * t), 0, None)
    return ((0.05 + 0.1 * t / seconds) * voice + 0.02 * rng.standard_normal(t.shape)).astype(np.float32)


def packed_model(out: Path, encoder: str, separator_conf: dict, seed: int = 0) -> Path:
    """A packed zip (espnet2 pack format) of an untrained model with random weights."""
    from espnet2.main_funcs.pack_funcs import pack

    from espnet2_pse.tasks.pse import PSETask

    enc_conf = CONV_CONF if encoder == "conv" else STFT_CONF
    config = {
        "encoder": encoder, "encoder_conf": enc_conf, "decoder": encoder, "decoder_conf": enc_conf,
        "separator": "conv_tasnet_skip", "separator_conf": separator_conf,
        "criterions": [{"name": "pse_distance", "conf": {"distance": "snr"}, "wrapper": "fixed_order",
                        "wrapper_conf": {"weight": 1.0}}],
        "use_tensorboard": False, "use_matplotlib": False,
    }
    exp = out / "exp"
    exp.mkdir(parents=True, exist_ok=True)
    (exp / "train.yaml").write_text(yaml.safe_dump(config))
    PSETask.main(cmd=[
        "--config", str(exp / "train.yaml"), "--dry_run", "true", "--output_dir", str(exp),
        "--train_data_path_and_name_and_type", "x,speech_mix,sound", "--train_shape_file", "x",
        "--valid_data_path_and_name_and_type", "x,speech_mix,sound", "--valid_shape_file", "x",
    ])
    model, _ = PSETask.build_model_from_file(exp / "config.yaml", None, "cpu")
    torch.save(perturb(model, seed).state_dict(), exp / "model.pth")
    pack(files={"model_file": exp / "model.pth"}, yaml_files={"train_config": exp / "config.yaml"},
         outpath=out / "model.zip")
    return out / "model.zip"


@pytest.fixture(scope="session")
def stft_zip(tmp_path_factory) -> Path:
    """Non-causal STFT model (gLN), the layout of the default personal model, smaller."""
    return packed_model(tmp_path_factory.mktemp("stft_zip"), "stft", {**SMALL_TCN, "magnitude_exponent": 0.3})


@pytest.fixture(scope="session")
def causal_stft_zip(tmp_path_factory) -> Path:
    conf = {**SMALL_TCN, "causal": True, "magnitude_exponent": 0.3}
    return packed_model(tmp_path_factory.mktemp("causal_stft_zip"), "stft", conf, seed=1)


@pytest.fixture(scope="session")
def causal_conv_zip(tmp_path_factory) -> Path:
    return packed_model(tmp_path_factory.mktemp("causal_conv_zip"), "conv", {**SMALL_TCN, "causal": True}, seed=2)


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: frame-sized products gain nothing from more, and with a busy machine
    a second thread spinning on a shared core slows the streaming steps tenfold."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
