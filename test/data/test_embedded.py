"""The embedded corpus built through the entry point: contract, disjointness, SNR labels, reruns."""

import hashlib
import logging

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from espnet2_pse.bin.prepare_data import main
from espnet2_pse.data import embedded, prepare, synth_noise, synth_speech
from espnet2_pse.data.kaldi_dir import read_data_dir
from espnet2_pse.data.layout import NOISE_BANKS, LayoutConfig
from espnet2_pse.data.mixing import snr_db
from espnet2_pse.data.runtime import derive_rng
from test.data.conftest import TINY_ARGS

SPEAKER_DIRS = ("pretrain", "preval", "fsl_train", "fsl_val", "test")


def _roles(root):
    return yaml.safe_load((root / "roles.yaml").read_text())


def _source_speech(d):
    """Speech utterance keys that the fixed mixtures of a data dir were cut from."""
    return {v.split()[0].split("=")[1].split("@")[0] for v in d.tables["utt2source"].values()}


def test_contract_layout_and_formats(tiny_corpus):
    roles = _roles(tiny_corpus)
    assert roles == {"target": ["syn01", "syn02"], "validation": ["syn03"], "generalist": ["syn04", "syn05"]}
    for bank in NOISE_BANKS:
        d = read_data_dir(tiny_corpus / "noise" / bank, check_audio=True)
        assert set(d.tables) >= {"wav.scp", "utt2dur", "utt2family", "utt2spk"}
    train = read_data_dir(tiny_corpus / "generalist" / "train", check_audio=True)
    assert train.wav == train.spk1 and set(train.utt2spk.values()) == {"syn04", "syn05"}
    valid = read_data_dir(tiny_corpus / "generalist" / "valid", check_audio=True)
    assert set(valid.utt2spk.values()) == {"syn03"} and len(valid.keys) == 4
    for spk in roles["target"]:
        meta = yaml.safe_load((tiny_corpus / "speakers" / spk / "meta.yaml").read_text())
        assert meta["speaker"] == spk and meta["source"] == "corpus" and meta["premixed"] is False
        for name in SPEAKER_DIRS:
            d = read_data_dir(tiny_corpus / "speakers" / spk / name, check_audio=True)
            assert (tiny_corpus / "speakers" / spk / name / "spk2utt").is_file()
            assert all(p.startswith(str(tiny_corpus)) for p in d.wav.values())
        test = read_data_dir(tiny_corpus / "speakers" / spk / "test")
        assert len(test.keys) == 6 and all(v == pytest.approx(4.0) for v in test.utt2dur.values())
    for f in (tiny_corpus / "audio").rglob("*.wav"):
        info = sf.info(str(f))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16"), f
    assert (tiny_corpus / "rejected.txt").read_text() == ""


def test_speakers_roles_and_splits_are_disjoint(tiny_corpus):
    roles = _roles(tiny_corpus)
    everyone = sum(roles.values(), [])
    assert len(everyone) == len(set(everyone)) == 5
    for spk in roles["target"]:
        base = tiny_corpus / "speakers" / spk
        clean = {n: set(read_data_dir(base / n).keys) for n in ("pretrain", "fsl_train")}
        mixed = {n: _source_speech(read_data_dir(base / n)) for n in ("preval", "fsl_val", "test")}
        groups = list(clean.values()) + list(mixed.values())
        for i, a in enumerate(groups):
            assert all(k.startswith(spk) for k in a)
            for b in groups[i + 1 :]:
                assert not a & b


def test_noise_banks_are_disjoint_and_test_families_unseen(tiny_corpus):
    files, hashes, families = {}, {}, {}
    for bank in NOISE_BANKS:
        d = read_data_dir(tiny_corpus / "noise" / bank)
        files[bank] = set(d.wav.values())
        hashes[bank] = {hashlib.sha1(open(p, "rb").read()).hexdigest() for p in d.wav.values()}
        families[bank] = set(d.tables["utt2family"].values())
    for i, a in enumerate(NOISE_BANKS):
        for b in NOISE_BANKS[i + 1 :]:
            assert not files[a] & files[b] and not hashes[a] & hashes[b], (a, b)
    seen = (
        families["inject_train"] | families["inject_val"] | families["premix_train"] | families["premix_val"]
    )
    assert families["test"] and not families["test"] & seen
    assert not families["inject_train"] & families["premix_train"]
    assert len(set().union(*families.values())) >= 8


def _measured_snr(noisy_path, clean_path):
    x = torch.from_numpy(sf.read(noisy_path)[0])
    s = torch.from_numpy(sf.read(clean_path)[0])
    return float(snr_db(s, x - s))


@pytest.mark.parametrize("name, low, high", [("test", -5, 5), ("preval", -5, 5), ("fsl_val", -5, 5)])
def test_fixed_mixture_snr_matches_label(tiny_corpus, name, low, high):
    for spk in _roles(tiny_corpus)["target"]:
        d = read_data_dir(tiny_corpus / "speakers" / spk / name)
        for key in d.keys:
            label = float(d.tables["utt2snr"][key])
            assert low <= label <= high
            assert abs(_measured_snr(d.wav[key], d.spk1[key]) - label) < 0.1, key


def test_preval_reference_is_premixed(tiny_corpus):
    d = read_data_dir(tiny_corpus / "speakers" / "syn01" / "preval")
    for key in d.keys:
        assert 0.0 <= float(d.tables["utt2presnr"][key]) <= 15.0
        assert "premix=premix_val-" in d.tables["utt2source"][key]
        assert "noise=inject_val-" in d.tables["utt2source"][key]


def test_rerun_is_noop_and_other_settings_are_refused(tiny_corpus, caplog):
    stamp = (tiny_corpus / ".done").stat().st_mtime_ns
    with caplog.at_level(logging.INFO):
        main(["--out", str(tiny_corpus)] + TINY_ARGS)
    assert "nothing to do" in caplog.text
    assert (tiny_corpus / ".done").stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match=r"seed: 0 then, 3 now"):
        main(["--out", str(tiny_corpus), "--seed", "3"] + TINY_ARGS)


def test_interrupted_build_is_cleared_and_foreign_data_refused(tmp_path, monkeypatch):
    out = tmp_path / "data"
    layout = prepare.LayoutConfig()
    cfg = embedded.EmbeddedConfig(num_speakers=3, num_target=1, num_validation=1)

    def crash(*args, **kwargs):
        (out / "noise").mkdir(exist_ok=True)
        (out / "noise" / "half-written").write_text("x")
        raise KeyboardInterrupt

    monkeypatch.setattr(prepare.embedded, "build_sources", crash)
    with pytest.raises(KeyboardInterrupt):
        prepare.prepare_corpus(out, "embedded", layout, cfg)
    assert (out / ".building").exists() and not (out / ".done").exists()

    def check_cleared(*args, **kwargs):
        assert not (out / "noise").exists()
        raise KeyboardInterrupt

    monkeypatch.setattr(prepare.embedded, "build_sources", check_cleared)
    with pytest.raises(KeyboardInterrupt):
        prepare.prepare_corpus(out, "embedded", layout, cfg)
    (out / ".building").unlink()
    (out / "noise").mkdir()
    with pytest.raises(ValueError, match="without a .done marker"):
        prepare.prepare_corpus(out, "embedded", layout, cfg)


def test_generation_is_deterministic_and_voices_distinct():
    voices = synth_speech.speaker_voices()
    assert len(voices) >= 16 and len({v.describe() for v in voices}) == len(voices)
    text = synth_speech.load_sentences()[0]
    a = synth_speech.utterance(text, voices[0], derive_rng(0, "x"), 0.5)
    b = synth_speech.utterance(text, voices[0], derive_rng(0, "x"), 0.5)
    np.testing.assert_array_equal(a, b)
    ctx = {"sentences": synth_speech.load_sentences()}
    for family in synth_noise.FAMILIES:
        x = synth_noise.generate(family, derive_rng(0, family), 1.0, ctx)
        y = synth_noise.generate(family, derive_rng(0, family), 1.0, ctx)
        assert x.shape == (16000,) and np.isfinite(x).all() and 0.2 < np.abs(x).max() <= 0.6
        np.testing.assert_array_equal(x, y)


def test_bad_size_knobs_are_refused(tmp_path):
    with pytest.raises(ValueError, match="need >= 1 target"):
        main(
            [
                "--out",
                str(tmp_path / "d"),
                "--num_speakers",
                "4",
                "--num_target",
                "2",
                "--num_validation",
                "2",
            ]
        )
    with pytest.raises(ValueError, match="num_speakers must be between"):
        main(["--out", str(tmp_path / "d"), "--num_speakers", "99"])


def test_interferer_test_reuses_the_test_references_at_labelled_levels(tmp_path):
    """--interferer_test true: every target gets test_interferer/, the test set's clean crops
    plus a validation-role talker at its TIR and test-bank noise at its SNR (both measured
    against the target); without the option the root's record is unchanged."""
    root = tmp_path / "data"
    main(["--out", str(root), "--interferer_test", "true"] + TINY_ARGS)
    roles = _roles(root)
    noise_bank = read_data_dir(root / "noise" / "test")
    for spk in roles["target"]:
        test = read_data_dir(root / "speakers" / spk / "test")
        d = read_data_dir(root / "speakers" / spk / "test_interferer")
        assert len(d.keys) == len(test.keys)
        for key, ref_key in zip(d.keys, test.keys):
            assert np.array_equal(sf.read(d.spk1[key])[0], sf.read(test.spk1[ref_key])[0])
            assert f"speech={ref_key} " in d.tables["utt2source"][key]
            assert d.tables["utt2interferer"][key] in roles["validation"]
            tir, snr = float(d.tables["utt2tir"][key]), float(d.tables["utt2snr"][key])
            assert 0 <= tir <= 10 and 0 <= snr <= 10
            # Rebuild the noise crop from utt2source: what remains of x - s is the talker.
            s = torch.from_numpy(sf.read(d.spk1[key])[0])
            x = torch.from_numpy(sf.read(d.wav[key])[0])
            noise_key, offset = dict(p.split("=", 1) for p in d.tables["utt2source"][key].split())["noise"].split("@")
            n = sf.read(noise_bank.wav[noise_key])[0]
            start = int(round(float(offset[:-1]) * 16000))
            n = torch.from_numpy(np.resize(n, len(s)) if len(n) < len(s) else n[start:start + len(s)])
            noise = n * torch.sqrt(s.pow(2).sum() / (n.pow(2).sum() * 10 ** (snr / 10)))
            talker = x - s - noise
            assert abs(float(snr_db(s, talker)) - tir) < 0.2, key
    record = yaml.safe_load((root / ".done").read_text())["config"]["layout"]
    assert record["interferer_test"] is True and record["interferer_tir"] == [0.0, 10.0]
    # Roots built before the option existed keep matching their record.
    assert "interferer_test" not in LayoutConfig().to_dict()
