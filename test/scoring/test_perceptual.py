"""DNSMOS / personalized DNSMOS and the pretrained GE2E speaker similarity, on espeak-ng speech.

Both are checked against the packages they come from (speechmos' own scoring loop, Resemblyzer's
own encoder with its unused VAD import stubbed), then for the behaviour the benchmarks rely on:
a kept interfering talker lowers personalized DNSMOS, another voice lowers speaker similarity.
"""

import subprocess
import sys
import types

import numpy as np
import pytest
import soundfile as sf
import soxr

from espnet2_pse.scoring.dnsmos import dnsmos, windows
from espnet2_pse.scoring.metrics import columns_for, reference_free_scores, score_utterance, speaker_embedding
from espnet2_pse.spk.ge2e import GE2E

FS = 16000


def say(tmp_path, voice: str, text: str) -> np.ndarray:
    path = tmp_path / f"{voice}.wav"
    subprocess.run(["espeak-ng", "-w", str(path), "-v", voice, text], check=True)
    x, fs = sf.read(str(path), dtype="float64")
    return soxr.resample(x, fs, FS)


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("espeak")
    a1 = say(tmp, "en", "the quick brown fox jumps over the lazy dog near the river bank")
    a2 = say(tmp, "en", "she sells sea shells by the sea shore every single morning")
    b = say(tmp, "en+f3", "a completely different person is talking in the other room now")
    return a1, a2, b


def test_dnsmos_matches_speechmos_for_both_models(speech):
    from speechmos.dnsmos import run

    rng = np.random.default_rng(0)
    x = speech[0] + 0.02 * rng.standard_normal(len(speech[0]))
    x = 0.9 * x / np.abs(x).max()
    for ours, theirs in (("dnsmos", "dnsmos"), ("pdnsmos", "dnsmos_personalized")):
        expected = run(x.astype(np.float32), FS, model_type=theirs)
        got = dnsmos(x, FS, ours, all_windows=True)
        for col in ("sig", "bak", "ovrl"):
            assert got[col] == pytest.approx(float(expected[f"{col}_mos"]), abs=1e-5), (ours, col)


def test_kept_talker_lowers_personalized_dnsmos_and_noise_lowers_bak(speech):
    a1, _, b = speech
    length = min(len(a1), len(b))
    target = a1[:length]
    other = b[:length] * np.sqrt(np.sum(target ** 2) / np.sum(b[:length] ** 2)) * 0.7  # about 3 dB below
    clean = reference_free_scores(target, FS, ("dnsmos", "pdnsmos"))
    with_talker = reference_free_scores(0.9 * (target + other) / np.abs(target + other).max(), FS, ("pdnsmos",))
    noisy = reference_free_scores(target + 0.03 * np.random.default_rng(1).standard_normal(length), FS, ("dnsmos",))
    assert with_talker["pdnsmos_bak"] < clean["pdnsmos_bak"] - 0.3
    assert with_talker["pdnsmos_ovrl"] < clean["pdnsmos_ovrl"] - 0.3
    assert noisy["dnsmos_bak"] < clean["dnsmos_bak"] - 1.0
    assert 1.0 <= min(clean.values()) and max(clean.values()) <= 5.0


def test_dnsmos_windows_and_bad_input():
    # A 4-s clip is doubled to 16 s: seven 9.01-s windows at a 1-s hop, all shifts of the same
    # looped clip, of which one is scored by default; a 12-s clip has three distinct ones.
    assert windows(np.zeros(4 * FS), all_windows=True).shape == (7, int(9.01 * FS))
    assert windows(np.zeros(4 * FS)).shape == (1, int(9.01 * FS))
    assert windows(np.zeros(12 * FS)).shape == (3, int(9.01 * FS))
    with pytest.raises(ValueError, match="needs 16000 Hz audio, got 8000 Hz"):
        dnsmos(np.zeros(8000), 8000)
    with pytest.raises(ValueError, match="non-empty finite 1-D clip"):
        dnsmos(np.full(FS, np.nan), FS)
    with pytest.raises(ValueError, match="unknown DNSMOS model 'mos'"):
        dnsmos(np.zeros(FS), FS, "mos")


def test_ge2e_matches_resemblyzer(speech, monkeypatch):
    # Resemblyzer's package imports webrtcvad for silence trimming only; a stub lets its
    # encoder load for the comparison.
    monkeypatch.setitem(sys.modules, "webrtcvad", types.ModuleType("webrtcvad"))
    from resemblyzer.audio import normalize_volume
    from resemblyzer.voice_encoder import VoiceEncoder

    theirs = VoiceEncoder("cpu", verbose=False)
    ours = GE2E()
    for wav in (speech[0], speech[2][:8000]):  # several partial windows, and a single padded one
        wav = wav.astype(np.float32)
        expected = theirs.embed_utterance(normalize_volume(wav, -30, increase_only=True))
        np.testing.assert_allclose(ours.embed(wav), expected, atol=1e-5)


def test_speaker_similarity_tells_voices_apart_and_follows_the_rate(speech):
    a1, a2, b = speech
    same = float(speaker_embedding(a1, FS) @ speaker_embedding(a2, FS))
    other = float(speaker_embedding(a1, FS) @ speaker_embedding(b, FS))
    assert same > other + 0.1
    at_24k = soxr.resample(a1, FS, 24000)
    assert float(speaker_embedding(a1, FS) @ speaker_embedding(at_24k, 24000)) > 0.99
    # score_utterance: the unprocessed row (est None) is the mixture against the reference.
    row = score_utterance(a1, a1 + 0.1 * np.resize(b, len(a1)), None, FS, metrics=("spk_sim",))
    assert 0.8 < row["spk_sim"] <= 1.0
    assert columns_for(("dnsmos", "spk_sim")) == ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "spk_sim")
    with pytest.raises(ValueError, match="non-empty 1-D waveform"):
        speaker_embedding(np.zeros((2, 100)), FS)
