"""Bring your own user: mixed rates/channels/formats, segmentation, bad files, reruns."""

import logging

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from espnet2_pse.bin.prepare_data import main
from espnet2_pse.data.kaldi_dir import read_data_dir
from espnet2_pse.data.mixing import snr_db
from test.data.conftest import TINY_ARGS, write_audio


def make_user_folders(base):
    noisy = base / "noisy"
    write_audio(noisy / "long.wav", 20.0, sr=44100, channels=2, seed=1)  # -> 3 segments of 6.67 s
    write_audio(noisy / "phone.flac", 9.0, sr=8000, seed=2, fmt="FLAC")  # -> 2 segments of 4.5 s
    write_audio(noisy / "sub dir" / "float.wav", 6.0, sr=48000, subtype="FLOAT", seed=3)  # -> 1 segment
    write_audio(noisy / "phone.wav", 5.0, seed=4)  # same key as phone.flac, which sorts first
    write_audio(noisy / "short.wav", 2.0)
    (noisy / "corrupt.wav").write_bytes(b"RIFF1234WAVEfmt nonsense")
    sf.write(str(noisy / "empty.wav"), np.zeros(0), 16000)
    sf.write(str(noisy / "silent.wav"), np.zeros(16000 * 5), 16000)
    bad = np.full(16000 * 5, 0.1, dtype=np.float32)
    bad[7] = np.nan
    sf.write(str(noisy / "nan.wav"), bad, 16000, subtype="FLOAT")
    sf.write(str(noisy / "clipped.wav"), np.sign(np.sin(np.arange(16000 * 5) / 9.0)), 16000, subtype="FLOAT")
    (noisy / "notes.txt").write_text("not audio")
    write_audio(base / "clean" / "me.wav", 12.0, sr=22050, seed=5)  # -> 2 segments of 6 s
    write_audio(base / "test" / "noisy" / "t1.wav", 5.0, seed=6)
    write_audio(base / "test" / "clean" / "t1.flac", 5.0, seed=7, fmt="FLAC")
    write_audio(base / "test" / "noisy" / "t2.wav", 5.0, seed=8)  # no clean partner
    return base


def run_user(root, base, name="alice", extra=()):
    main(
        ["--out", str(root), "--corpus", "user"]
        + TINY_ARGS
        + [
            "--user_name",
            name,
            "--user_noisy_dir",
            str(base / "noisy"),
            "--user_clean_dir",
            str(base / "clean"),
            "--user_test_dir",
            str(base / "test"),
        ]
        + list(extra)
    )


def test_user_dirs_from_mixed_formats(corpus_copy, tmp_path):
    base = make_user_folders(tmp_path / "alice")
    run_user(corpus_copy, base)
    spk = corpus_copy / "speakers" / "alice"
    meta = yaml.safe_load((spk / "meta.yaml").read_text())
    assert meta["source"] == "user" and meta["premixed"] is True and meta["has_clean"] and meta["has_test"]
    roles = yaml.safe_load((corpus_copy / "roles.yaml").read_text())
    assert roles["target"] == ["syn01", "syn02", "alice"] and roles["user"] == ["alice"]
    pre = read_data_dir(spk / "pretrain", check_audio=True)
    preval = read_data_dir(spk / "preval", check_audio=True)
    segs = set(pre.keys) | {
        v.split()[0].split("=")[1].split("@")[0] for v in preval.tables["utt2source"].values()
    }
    assert segs <= {
        "alice-long-000",
        "alice-long-001",
        "alice-long-002",
        "alice-phone-000",
        "alice-phone-001",
        "alice-sub_dir_float-000",
    }
    assert len(pre.keys) >= 4 and pre.wav == pre.spk1
    assert all(4.0 <= d <= 8.0 for d in pre.utt2dur.values())
    fsl = read_data_dir(spk / "fsl_train", check_audio=True)
    assert fsl.total_seconds() == pytest.approx(6.0, abs=0.01)
    read_data_dir(spk / "fsl_val", check_audio=True)
    test = read_data_dir(spk / "test", check_audio=True)
    assert test.keys == ["alice-test-t1"]
    x, s = (torch.from_numpy(sf.read(p)[0]) for p in (test.wav["alice-test-t1"], test.spk1["alice-test-t1"]))
    assert float(snr_db(s, x - s)) == pytest.approx(float(test.tables["utt2snr"]["alice-test-t1"]), abs=0.01)


def test_user_preval_reference_is_the_recording(corpus_copy, tmp_path):
    base = make_user_folders(tmp_path / "alice")
    run_user(corpus_copy, base)
    d = read_data_dir(corpus_copy / "speakers" / "alice" / "preval")
    seg_dir = corpus_copy / "audio" / "user" / "alice" / "noisy"
    for key in d.keys:
        src = d.tables["utt2source"][key].split()[0].split("=")[1]
        seg_key, offset = src.split("@")
        seg = sf.read(str(seg_dir / f"{seg_key}.wav"))[0]
        start = int(round(float(offset.rstrip("s")) * 16000))
        ref = sf.read(d.spk1[key])[0]
        crop = seg[start : start + len(ref)]
        assert np.corrcoef(ref, crop)[0, 1] > 0.999  # same signal, at most rescaled
        x = torch.from_numpy(sf.read(d.wav[key])[0])
        r = torch.from_numpy(ref)
        assert abs(float(snr_db(r, x - r)) - float(d.tables["utt2snr"][key])) < 0.1


def test_user_bad_files_are_listed(corpus_copy, tmp_path):
    base = make_user_folders(tmp_path / "alice")
    run_user(corpus_copy, base)
    rejected = dict(
        line.split("\t")
        for line in (corpus_copy / "speakers" / "alice" / "rejected.txt").read_text().splitlines()
    )
    expect = {
        "short.wav": "shorter than 4 s",
        "corrupt.wav": "cannot be decoded",
        "empty.wav": "is empty",
        "silent.wav": "is silent",
        "nan.wav": "NaN or Inf",
        "clipped.wav": "heavily clipped",
        "phone.wav": "duplicate key alice-phone",
        "t2.wav": "no clean file named t2",
    }
    found = {p.rsplit("/", 1)[1]: r for p, r in rejected.items()}
    for name, reason in expect.items():
        assert reason in found.get(name, ""), (name, found)
    assert len(rejected) == len(expect)


def test_user_rerun_is_noop_and_name_clash_refused(corpus_copy, tmp_path, caplog):
    base = make_user_folders(tmp_path / "alice")
    run_user(corpus_copy, base)
    stamp = (corpus_copy / "speakers" / "alice" / ".done").stat().st_mtime_ns
    with caplog.at_level(logging.INFO):
        run_user(corpus_copy, base)
    assert (corpus_copy / "speakers" / "alice" / ".done").stat().st_mtime_ns == stamp
    assert "alice is complete; nothing to do" in caplog.text
    with pytest.raises(ValueError, match="syn03 is already a corpus speaker"):
        run_user(corpus_copy, base, name="syn03")


def test_user_with_too_little_audio_is_an_error(corpus_copy, tmp_path):
    write_audio(tmp_path / "bob" / "only.wav", 5.0)
    with pytest.raises(ValueError, match=r"bob: 1 usable segment\(s\) of noisy recordings; need at least 2"):
        main(
            ["--out", str(corpus_copy)]
            + TINY_ARGS
            + ["--user_name", "bob", "--user_noisy_dir", str(tmp_path / "bob")]
        )


def test_user_corpus_needs_noisy_dir(corpus_copy):
    with pytest.raises(ValueError, match="--corpus user needs --user_noisy_dir"):
        main(["--out", str(corpus_copy), "--corpus", "user"] + TINY_ARGS)
