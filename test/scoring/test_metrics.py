import logging

import numpy as np
import pytest

from espnet2_pse.scoring.metrics import (
    LENGTH_TOLERANCE,
    columns_for,
    estoi,
    pesq_wb,
    score_utterance,
    si_sdr,
    snr,
    trim_to_shortest,
)
from test.scoring.signals import FS, speech_like


@pytest.fixture(scope="module")
def signals():
    rng = np.random.default_rng(1)
    ref = speech_like(2.0)
    noise = rng.standard_normal(ref.size)
    noise *= np.sqrt(np.dot(ref, ref) / np.dot(noise, noise) / 10 ** (5.0 / 10))  # 5 dB SNR
    return ref, noise


def test_snr_of_known_additive_noise(signals):
    ref, noise = signals
    assert snr(ref, ref + noise) == pytest.approx(5.0, abs=0.01)
    assert snr(ref, ref + 0.5 * noise) == pytest.approx(5.0 + 20 * np.log10(2), abs=0.01)


def test_si_sdr_is_scale_invariant_and_matches_definition(signals):
    ref, noise = signals
    est = ref + noise
    base = si_sdr(ref, est)
    for gain in (1e-3, 0.5, 7.0, -2.0):
        assert si_sdr(ref, gain * est) == pytest.approx(base, abs=1e-9)
    # Noise orthogonal to the zero-mean reference: SI-SDR is the energy ratio.
    r, n = ref - ref.mean(), noise - noise.mean()
    n = n - np.dot(n, r) / np.dot(r, r) * r
    assert si_sdr(ref, ref + n) == pytest.approx(10 * np.log10(np.dot(r, r) / np.dot(n, n)), abs=1e-9)
    # ...and scaling the reference does not change it either, while SNR does.
    assert si_sdr(3.0 * ref, est) == pytest.approx(base, abs=1e-9)
    assert snr(ref, 2.0 * est) < snr(ref, est) - 3.0


def test_si_sdr_rejects_silent_reference(signals):
    ref, _ = signals
    with pytest.raises(ValueError, match="reference is silent"):
        si_sdr(np.zeros_like(ref), ref)


def test_identity_enhancer_scores_zero_improvement(signals):
    ref, noise = signals
    mix = ref + noise
    row = score_utterance(ref, mix, mix.copy(), FS, ("si_sdr", "snr"), key="u1")
    assert row["si_sdri"] == 0.0 and row["snri"] == 0.0
    assert row["snr"] == pytest.approx(5.0, abs=0.01)
    # Scoring the mixture itself (est=None) is the same row.
    assert score_utterance(ref, mix, None, FS, ("si_sdr", "snr")) == row


def test_better_estimate_has_positive_improvement(signals):
    ref, noise = signals
    row = score_utterance(ref, ref + noise, ref + 0.1 * noise, FS, ("si_sdr", "snr", "pesq", "estoi"))
    assert row["snri"] == pytest.approx(20.0, abs=0.01)
    assert row["si_sdri"] == pytest.approx(20.0, abs=0.1)
    assert list(row) == list(columns_for(("si_sdr", "snr", "pesq", "estoi")))
    assert 1.0 < row["pesq"] <= 4.65 and 0.0 < row["estoi"] <= 1.0


def test_pesq_and_estoi_order_quality(signals):
    ref, noise = signals
    assert pesq_wb(ref, ref, FS) == pytest.approx(4.64, abs=0.01)
    assert pesq_wb(ref, ref + 0.1 * noise, FS) > pesq_wb(ref, ref + noise, FS)
    assert estoi(ref, ref, FS) == pytest.approx(1.0, abs=1e-6)
    assert estoi(ref, ref + 0.1 * noise, FS) > estoi(ref, ref + noise, FS)


def test_pesq_failure_is_nan_with_warning_naming_utterance(signals, caplog):
    _, noise = signals
    with caplog.at_level(logging.WARNING):
        value = pesq_wb(np.zeros_like(noise), noise, FS, key="utt_silent")
    assert np.isnan(value)
    assert "utt_silent" in caplog.text
    with pytest.raises(ValueError, match="16000"):
        pesq_wb(noise, noise, 8000)


def test_length_mismatch_trims_and_warns_only_beyond_tolerance(signals, caplog):
    ref, noise = signals
    with caplog.at_level(logging.WARNING):
        out = trim_to_shortest("short_diff", ref=ref, est=ref[:-LENGTH_TOLERANCE])
    assert len(out["ref"]) == len(out["est"]) == ref.size - LENGTH_TOLERANCE
    assert "short_diff" not in caplog.text
    with caplog.at_level(logging.WARNING):
        row = score_utterance(ref, ref + noise, (ref + noise)[:-800], FS, ("si_sdr",), key="long_diff")
    assert "long_diff" in caplog.text and "trimming" in caplog.text
    assert row["si_sdri"] == pytest.approx(0.0, abs=1e-9)


def test_unknown_metric_is_named():
    with pytest.raises(ValueError, match="stoi"):
        columns_for(["si_sdr", "stoi"])
