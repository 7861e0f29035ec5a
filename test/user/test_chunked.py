"""Chunked enhancement: layout, cross-fade, agreement with whole-signal processing, file I/O."""

import numpy as np
import pytest
import soundfile as sf

from espnet2_pse.inference.chunked import ChunkedEnhancer, chunk_starts, crossfade
from espnet2_pse.inference.model_loading import load_separate_speech


def test_chunk_layout_covers_the_signal_with_fixed_overlaps():
    for frames in (1, 999, 1000, 1001, 4321, 10000):
        starts = chunk_starts(frames, chunk=1000, overlap=250)
        ends = [s + 1000 for s in starts[:-1]] + [frames]
        assert starts[0] == 0 and ends[-1] == frames
        # Consecutive chunks share exactly the overlap; the last one is longer than it.
        assert all(e - s2 == 250 for e, s2 in zip(ends[:-1], starts[1:]))
        assert len(starts) == 1 or ends[-1] - starts[-1] > 250
    with pytest.raises(ValueError, match="less than half a chunk"):
        chunk_starts(100, chunk=100, overlap=50)


def test_crossfade_weights_sum_to_one():
    fade_in = crossfade(64)
    np.testing.assert_allclose(fade_in + fade_in[::-1], 1.0, atol=1e-6)
    assert fade_in[0] < 0.01 and fade_in[-1] > 0.99


def long_signal(fs: int, seconds: float, channels: int = 2) -> np.ndarray:
    """A voice-like tone whose level ramps over time (the chunks see different levels)."""
    rng = np.random.default_rng(3)
    t = np.arange(int(fs * seconds)) / fs
    level = 0.1 + 0.9 * ((t % 10.0) / 10.0)
    x = level * (0.3 * np.sin(2 * np.pi * (150 + 40 * np.sin(t)) * t) * np.clip(np.sin(2 * np.pi * 3 * t), 0, None)
                 + 0.05 * rng.standard_normal(t.shape))
    return np.stack([x, 0.5 * x], axis=1)[:, :channels].astype(np.float32)


def snr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(reference ** 2) / np.sum((reference - estimate) ** 2)))


def test_chunked_matches_whole_signal_away_from_chunk_edges(local_model):
    """A model with only local layers gives the same output chunked, except near the joins."""
    separate_speech = load_separate_speech(local_model)
    fs, seconds, chunk, overlap = 44100, 30.0, 4.0, 0.5
    x = long_signal(fs, seconds)
    whole = ChunkedEnhancer(separate_speech, chunk_seconds=None).enhance_array(x, fs)
    chunked = ChunkedEnhancer(separate_speech, chunk_seconds=chunk, overlap_seconds=overlap).enhance_array(x, fs)
    assert whole.shape == chunked.shape == (x.shape[0],)
    assert np.isfinite(chunked).all() and np.std(chunked) > 1e-4

    starts = chunk_starts(x.shape[0], int(chunk * fs), int(overlap * fs))
    assert len(starts) == 9
    interior = np.ones(x.shape[0], dtype=bool)
    margin = int(0.2 * fs)  # receptive field (~0.06 s) plus the resampler's filter
    for start in starts[1:]:
        interior[start - margin:start + int(overlap * fs) + margin] = False
    # Measured: ~127 dB in the interiors and ~126 dB overall (float rounding; the fades hide
    # the chunk edges); butting chunks without overlap gives ~48 dB.
    assert snr_db(whole[interior], chunked[interior]) > 60.0
    assert snr_db(whole, chunked) > 50.0


def test_enhance_file_streams_the_same_samples(local_model, tmp_path):
    """File in blocks and out incrementally == in-memory processing; mono, rate and length kept."""
    separate_speech = load_separate_speech(local_model)
    fs = 22050
    x = long_signal(fs, 13.0)
    sf.write(str(tmp_path / "in.wav"), x, fs, subtype="FLOAT")
    enhancer = ChunkedEnhancer(separate_speech, chunk_seconds=3.0, overlap_seconds=0.5)
    seen = []
    result = enhancer.enhance_file(tmp_path / "in.wav", tmp_path / "out" / "in.wav", lambda i, n: seen.append((i, n)))
    y, out_fs = sf.read(str(tmp_path / "out" / "in.wav"), dtype="float32")
    assert out_fs == fs and y.ndim == 1 and y.shape[0] == x.shape[0]
    assert result.chunks == 5 and seen[-1] == (5, 5) and result.input_channels == 2
    np.testing.assert_allclose(y, enhancer.enhance_array(x, fs), atol=1e-6)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["in.wav"]  # no temp file left
