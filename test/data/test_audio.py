"""Audio checks: every bad-input kind gets a one-line reason naming the file."""

import numpy as np
import pytest
import soundfile as sf

from espnet2_pse.data.audio import AudioError, Rejections, fit_peak, load_audio, read_wav, resample, write_wav
from test.data.conftest import write_audio


@pytest.mark.parametrize("sr", [8000, 22050, 44100, 48000])
def test_any_rate_is_resampled_to_16k(tmp_path, sr):
    path = write_audio(tmp_path / f"x{sr}.wav", 1.5, sr=sr)
    x = load_audio(path)
    assert x.dtype == np.float32 and x.ndim == 1
    assert abs(len(x) - 24000) <= 1


def test_resampled_tone_keeps_its_frequency():
    sr = 44100
    t = np.arange(sr) / sr
    y = resample(np.sin(2 * np.pi * 1000 * t).astype(np.float32), sr, 16000)
    spec = np.abs(np.fft.rfft(y[2000:-2000]))
    freq = np.fft.rfftfreq(len(y) - 4000, 1 / 16000)[spec.argmax()]
    assert abs(freq - 1000) < 2


def test_multichannel_is_downmixed_by_mean(tmp_path):
    sr = 16000
    x = 0.4 * np.sin(2 * np.pi * 200 * np.arange(sr) / sr)
    path = tmp_path / "stereo.wav"
    sf.write(str(path), np.stack([x, 0.5 * x], axis=1), sr, subtype="FLOAT")
    y = load_audio(path)
    np.testing.assert_allclose(y, 0.75 * x, atol=1e-6)


@pytest.mark.parametrize(
    "kind, reason",
    [
        ("missing", "does not exist"),
        ("corrupt", "cannot be decoded"),
        ("empty", "is empty"),
        ("nan", "NaN or Inf"),
        ("inf", "NaN or Inf"),
        ("clipped", "heavily clipped"),
        ("silent", "is silent"),
        ("short", "shorter than 4 s"),
    ],
)
def test_bad_inputs_raise_with_file_and_reason(tmp_path, kind, reason):
    path = tmp_path / f"{kind}.wav"
    sr = 16000
    if kind == "corrupt":
        path.write_bytes(b"RIFF\x00\x00\x00\x00WAVEgarbage" + bytes(range(200)))
    elif kind == "empty":
        sf.write(str(path), np.zeros(0), sr)
    elif kind in ("nan", "inf"):
        x = np.full(5 * sr, 0.1, dtype=np.float32)
        x[100] = np.nan if kind == "nan" else np.inf
        sf.write(str(path), x, sr, subtype="FLOAT")
    elif kind == "clipped":
        x = np.sign(np.sin(2 * np.pi * 100 * np.arange(5 * sr) / sr))  # square wave at full scale
        sf.write(str(path), x, sr, subtype="FLOAT")
    elif kind == "silent":
        sf.write(str(path), np.zeros(5 * sr), sr)
    elif kind == "short":
        write_audio(path, 2.0)
    with pytest.raises(AudioError) as info:
        load_audio(path, min_seconds=4.0)
    msg = str(info.value)
    assert str(path) in msg and reason in msg
    assert "\n" not in msg


def test_light_clipping_is_accepted(tmp_path):
    sr = 16000
    x = 0.5 * np.sin(2 * np.pi * 100 * np.arange(5 * sr) / sr)
    x[:10] = 1.0  # 10 clipped samples out of 80000: below the 1% limit
    path = tmp_path / "light.wav"
    sf.write(str(path), x, sr, subtype="FLOAT")
    assert len(load_audio(path)) == 5 * sr


def test_write_wav_is_pcm16_and_refuses_clipping(tmp_path):
    x = (0.5 * np.sin(np.arange(1000) / 5)).astype(np.float32)
    write_wav(tmp_path / "a.wav", x)
    info = sf.info(str(tmp_path / "a.wav"))
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    np.testing.assert_allclose(read_wav(tmp_path / "a.wav"), x, atol=1 / 32768)
    with pytest.raises(ValueError, match="clip"):
        write_wav(tmp_path / "b.wav", x * 3)
    assert not (tmp_path / "b.wav").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["a.wav"]  # no temporary leftovers


def test_fit_peak_keeps_ratio():
    a, b = np.array([2.0, -1.0]), np.array([0.5, 0.25])
    a2, b2 = fit_peak(a, b, peak=0.9)
    assert np.isclose(np.abs(a2).max(), 0.9)
    np.testing.assert_allclose(a2 / a, b2 / b, rtol=1e-6)


def test_rejections_file_lists_each_file_with_reason(tmp_path):
    rej = Rejections()
    for p in ["/x/a.wav", "/x/b.flac"]:
        try:
            load_audio(p)
        except AudioError as err:
            rej.add_error(err)
    rej.write(tmp_path / "rejected.txt")
    lines = (tmp_path / "rejected.txt").read_text().splitlines()
    assert lines == ["/x/a.wav\tfile does not exist", "/x/b.flac\tfile does not exist"]
