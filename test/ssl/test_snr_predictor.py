import espnet2_pse  # noqa: F401, I001  (first: quiet ESPnet import)
import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from espnet2_pse.bin.snr_predictor_train import main as train_main
from espnet2_pse.losses.distances import framewise_distance
from espnet2_pse.ssl.snr_predictor import SNRPredictor, dp_weights, frame_snr_target
from espnet2_pse.tasks.snr_predictor import (
    ESPnetSNRPredictorModel,
    crop_speech,
    load_snr_predictor,
)

FS = 16000


def _write_wav(path, seconds, seed, fs=FS, kind="speech"):
    rng = np.random.default_rng(seed)
    n = int(seconds * fs)
    if kind == "speech":  # bursts of harmonic "voice" separated by pauses
        t = np.arange(n) / fs
        envelope = (np.sin(2 * np.pi * 2.5 * t + seed) > 0).astype(float)
        x = 0.3 * envelope * np.sin(2 * np.pi * (120 + 10 * seed) * t * (1 + 0.1 * np.sin(3 * t)))
    else:
        x = 0.1 * rng.standard_normal(n)
    sf.write(path, x.astype(np.float32), fs, subtype="PCM_16")
    return path


def _read(path):
    return torch.from_numpy(sf.read(path, dtype="float32")[0])


def _model(hidden_size, noise_scp):
    predictor = SNRPredictor(hidden_size=hidden_size, num_layers=1)
    return ESPnetSNRPredictorModel(predictor, noise_scp=noise_scp and str(noise_scp))


def _scp(path, entries):
    path.write_text("".join(f"{k} {v}\n" for k, v in sorted(entries.items())))
    return path


@pytest.fixture
def noise_scp(tmp_path):
    wavs = {
        f"n{i}": _write_wav(tmp_path / f"n{i}.wav", seconds, 10 + i, kind="noise")
        for i, seconds in enumerate([2.0, 0.3])
    }
    return _scp(tmp_path / "noise.scp", wavs)


def test_default_size_matches_the_paper():
    model = SNRPredictor()
    bins, hidden = 513, 1024
    first = 3 * (bins * hidden + hidden * hidden + 2 * hidden)  # 3 gates, weights + 2 biases
    gru = first + 2 * 3 * (2 * hidden * hidden + 2 * hidden)
    assert sum(p.numel() for p in model.parameters()) == gru + hidden + 1 == 17_324_033


@pytest.mark.parametrize("length", [1000, 4000, 4096, 16000])
def test_frames_line_up_with_the_segmental_loss(length):
    x = torch.randn(2, length)
    y = x + torch.randn(2, length)
    expected = length // 256 + 1
    assert SNRPredictor(hidden_size=8, num_layers=1)(x).shape == (2, expected)
    assert frame_snr_target(x, y).shape == (2, expected)
    assert framewise_distance("snr", y, x).shape == (2, expected)


def test_frame_snr_target_matches_manual_loop():
    rng = np.random.default_rng(3)
    clean = rng.standard_normal((2, 3000))
    clean[:, 1000:2000] *= 0.01  # a quiet stretch gives low-SNR frames
    noisy = clean + 0.3 * rng.standard_normal((2, 3000))
    got = frame_snr_target(torch.tensor(clean), torch.tensor(noisy)).numpy()
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(1024) / 1024)
    for b in range(2):
        s = np.pad(clean[b], 512, mode="reflect")
        r = np.pad(clean[b] - noisy[b], 512, mode="reflect")
        want = []
        for i in range(0, len(s) - 1024 + 1, 256):
            energy = np.sum((window * s[i : i + 1024]) ** 2)
            residual = np.sum((window * r[i : i + 1024]) ** 2)
            want.append(10 * np.log10(energy / residual))
        np.testing.assert_allclose(got[b], np.clip(want, -30, 30), rtol=1e-6, atol=1e-6)
    assert got.min() < -5 and got.max() > 5
    # Identical signals: the clamp bounds the otherwise infinite SNR.
    same = torch.tensor(clean)
    assert torch.all(frame_snr_target(same, same) == 30.0)


def test_prediction_ignores_level():
    torch.manual_seed(0)
    model = SNRPredictor(hidden_size=8, num_layers=2)
    x = torch.randn(2, 4000)
    torch.testing.assert_close(model(x), model(100.0 * x), rtol=1e-4, atol=1e-4)


def test_dp_weights_are_detached_probabilities_and_leave_the_predictor_alone():
    torch.manual_seed(0)
    model = SNRPredictor(hidden_size=8, num_layers=1)
    with torch.no_grad():
        model.linear.bias.fill_(3.0)  # weights away from 0.5 so the check means something
    before = {k: v.clone() for k, v in model.state_dict().items()}
    source = torch.randn(3, 4000, requires_grad=True)
    with torch.enable_grad():
        w = dp_weights(model, source)
    assert w.shape == (3, 4000 // 256 + 1)
    assert torch.all((w > 0) & (w < 1)) and w.mean() > 0.8
    assert not w.requires_grad and w.grad_fn is None
    torch.testing.assert_close(w, torch.sigmoid(model(source)).detach())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_model_loss_state_dict_and_deterministic_validation(tmp_path, noise_scp):
    torch.manual_seed(0)
    model = _model(8, noise_scp)
    assert all(k.startswith("predictor.") for k in model.state_dict())
    assert set(model.state_dict()) == {"predictor." + k for k in model.predictor.state_dict()}
    speech = torch.zeros(2, 8000)
    speech[0] = _read(_write_wav(tmp_path / "s0.wav", 0.5, 0))
    speech[1, :6000] = _read(_write_wav(tmp_path / "s1.wav", 6000 / FS, 1))
    lengths = torch.tensor([8000, 6000])
    loss, stats, weight = model(speech, lengths)
    assert torch.isfinite(loss).all() and loss.item() > 0
    assert {"loss", "mae_db"} <= set(stats) and int(weight) == 2
    loss.sum().backward()
    assert model.predictor.linear.weight.grad is not None
    model.eval()
    first = model(speech, lengths)[0]
    model.eval()
    torch.testing.assert_close(model(speech, lengths)[0], first)


def test_noise_crops_and_tiling(noise_scp):
    model = _model(4, noise_scp)
    long_noise = _read(noise_scp.parent / "n0.wav").numpy()
    short_noise = _read(noise_scp.parent / "n1.wav").numpy()
    np.random.seed(0)
    seen = set()
    for _ in range(20):
        crop = model.draw_noise(8000)
        assert crop.shape == (8000,)
        if np.array_equal(crop[: len(short_noise)], short_noise):
            rest = 8000 - len(short_noise)
            np.testing.assert_array_equal(crop[len(short_noise) :], short_noise[:rest])
            seen.add("short")
        else:
            starts = [s for s in range(len(long_noise) - 8000 + 1) if long_noise[s] == crop[0]]
            assert any(np.array_equal(long_noise[s : s + 8000], crop) for s in starts)
            seen.add("long")
    assert seen == {"short", "long"}


def test_noise_bank_errors_name_the_file(tmp_path):
    speech, lengths = torch.randn(1, 4000), torch.tensor([4000])
    with pytest.raises(ValueError, match="--noise_scp"):
        _model(4, None)(speech, lengths)
    wrong = _write_wav(tmp_path / "n8k.wav", 1.0, 0, fs=8000, kind="noise")
    scp = _scp(tmp_path / "bad.scp", {"a": wrong})
    model = _model(4, scp)
    with pytest.raises(ValueError, match="n8k.wav: has 8000 Hz"):
        model(speech, lengths)


def test_crop_speech():
    x = np.arange(20000, dtype=np.float32)
    np.random.seed(0)
    out = crop_speech("u1", {"speech": x}, 16000, train=True)["speech"]
    assert len(out) == 16000 and np.array_equal(out, x[int(out[0]) : int(out[0]) + 16000])
    out = crop_speech("u1", {"speech": x}, 16000, train=False)["speech"]
    assert out[0] == 2000
    assert len(crop_speech("u1", {"speech": x[:5000]}, 16000, train=True)["speech"]) == 5000
    with pytest.raises(ValueError, match="'u2'.*mono"):
        crop_speech("u2", {"speech": np.zeros((100, 2))}, 16000, train=True)
    with pytest.raises(ValueError, match="'u3'.*NaN"):
        crop_speech("u3", {"speech": np.full(100, np.nan)}, 16000, train=True)


def test_one_epoch_training_and_reload(tmp_path, noise_scp):
    data = tmp_path / "data"
    data.mkdir()
    # Two utterances shorter than the crop: they must be kept, not dropped.
    seconds = [1.2, 0.4, 0.8, 0.3, 1.0, 0.9]
    train = {f"u{i}": _write_wav(data / f"u{i}.wav", s, i) for i, s in enumerate(seconds)}
    valid = {f"v{i}": _write_wav(data / f"v{i}.wav", s, 20 + i) for i, s in enumerate([0.7, 0.6])}
    train_scp, valid_scp = _scp(data / "train.scp", train), _scp(data / "valid.scp", valid)
    common = [
        "--train_data_path_and_name_and_type", f"{train_scp},speech,sound",
        "--valid_data_path_and_name_and_type", f"{valid_scp},speech,sound",
        "--noise_scp", str(noise_scp),
        "--crop_length", "8000",
        "--predictor_conf", "hidden_size=16", "--predictor_conf", "num_layers=1",
        "--ngpu", "0", "--num_workers", "0", "--seed", "0",
    ]  # fmt: skip
    stats = tmp_path / "stats"
    train_main(common + ["--collect_stats", "true", "--output_dir", str(stats)])
    lines = (stats / "train" / "speech_shape").read_text().splitlines()
    # Long utterances are cropped to 8000 samples, short ones kept whole.
    want = {"u0": 8000, "u1": 6400, "u2": 8000, "u3": 4800, "u4": 8000, "u5": 8000}
    assert {k: int(v) for k, v in (line.split() for line in lines)} == want
    exp = tmp_path / "exp"
    train_main(
        common
        + ["--output_dir", str(exp), "--max_epoch", "1"]
        + ["--optim", "adam", "--optim_conf", "lr=0.001"]
        + ["--batch_type", "unsorted", "--batch_size", "2"]
        + ["--train_shape_file", str(stats / "train" / "speech_shape")]
        + ["--valid_shape_file", str(stats / "valid" / "speech_shape")]
        + ["--use_tensorboard", "false", "--use_matplotlib", "false"]
    )
    checkpoint = exp / "1epoch.pth"
    assert checkpoint.is_file() and (exp / "valid.loss.best.pth").exists()
    config = yaml.safe_load((exp / "config.yaml").read_text())
    assert config["predictor_conf"]["hidden_size"] == 16 and config["noise_scp"] == str(noise_scp)

    state = torch.load(checkpoint, map_location="cpu")
    assert set(state) == {f"predictor.{k}" for k in SNRPredictor(16, 1).state_dict()}
    # The noise bank is not needed to reload.
    noise_scp.unlink()
    # The lead's objectives pass the batch's torch.device.
    predictor = load_snr_predictor(exp / "config.yaml", checkpoint, device=torch.device("cpu"))
    assert isinstance(predictor, SNRPredictor) and not predictor.training
    assert predictor.rnn.hidden_size == 16
    assert all(not p.requires_grad for p in predictor.parameters())
    torch.testing.assert_close(predictor.linear.weight, state["predictor.linear.weight"])
    assert dp_weights(predictor, torch.randn(1, 8000)).shape == (1, 32)

    config["predictor_conf"]["hidden_size"] = 8
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(config))
    with pytest.raises(RuntimeError, match="1epoch.pth do not match"):
        load_snr_predictor(other, checkpoint)
