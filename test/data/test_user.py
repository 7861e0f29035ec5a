"""Bring your own user: mixed rates/channels/formats, segmentation, bad files, reruns."""

import hashlib
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
    write_audio(base / "clean" / "me.wav", 12.0, sr=22050, seed=5)  # -> 2 segments of 6 s, none held out
    write_audio(base / "test" / "noisy" / "t1.wav", 5.0, seed=6)
    write_audio(base / "test" / "clean" / "t1.flac", 5.0, seed=7, fmt="FLAC")
    write_audio(base / "test" / "noisy" / "t2.wav", 5.0, seed=8)  # no clean partner
    return base


def run_user(root, base, name="alice", extra=(), folders=("noisy", "clean", "test")):
    """prepare_data with the user's folders named in ``folders`` (subfolders of ``base``); without
    noisy recordings on the corpus itself (``--corpus user`` is the recipe's, which needs them)."""
    args = ["--user_name", name] + (["--corpus", "user"] if "noisy" in folders else [])
    for folder in folders:
        args += [f"--user_{folder}_dir", str(base / folder)]
    main(["--out", str(root)] + TINY_ARGS + args + list(extra))


def snapshot(*folders):
    """relative path -> (mtime_ns, sha1) of every file under ``folders`` (hidden ones too)."""
    out = {}
    for folder in folders:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                out[str(f)] = (f.stat().st_mtime_ns, hashlib.sha1(f.read_bytes()).hexdigest())
    return out


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
    assert fsl.total_seconds() == pytest.approx(12.0, abs=0.01)  # under 30 s: all of it trains
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


def test_user_with_clean_speech_only(corpus_copy, tmp_path, caplog):
    """Without noisy recordings the clean part stands alone: all of a short clean folder trains
    (fsl_val mixes that same speech), the user is no SSL target, and noisy recordings given later
    rebuild the user from scratch."""
    base = make_user_folders(tmp_path / "alice")
    spk = corpus_copy / "speakers" / "alice"
    with caplog.at_level(logging.WARNING):
        run_user(corpus_copy, base, folders=("clean",))
    assert "12.0 s of clean speech (< 30 s): all of it is trained on" in caplog.text
    fsl = read_data_dir(spk / "fsl_train", check_audio=True)
    assert fsl.keys == ["alice-me-000", "alice-me-001"] and fsl.total_seconds() == pytest.approx(12.0, abs=0.01)
    val = read_data_dir(spk / "fsl_val", check_audio=True)
    sources = {v.split()[0].split("=")[1].split("@")[0] for v in val.tables["utt2source"].values()}
    assert sources <= set(fsl.keys) and not (spk / "pretrain").exists()
    meta = yaml.safe_load((spk / "meta.yaml").read_text())
    assert meta["premixed"] is False and meta["noisy_dir"] == "" and meta["pretrain_seconds"] == 0.0
    roles = yaml.safe_load((corpus_copy / "roles.yaml").read_text())
    assert "alice" not in roles["target"] and roles["user"] == ["alice"]

    run_user(corpus_copy, base, folders=("noisy", "clean"))
    assert read_data_dir(spk / "pretrain", check_audio=True).keys
    assert "alice" in yaml.safe_load((corpus_copy / "roles.yaml").read_text())["target"]
    # ... and they cannot silently go again: the noisy part is what zero-shot learnt from.
    with pytest.raises(ValueError, match="was prepared with other settings"):
        run_user(corpus_copy, base, folders=("clean",))


def test_user_clean_speech_of_30_s_or_more_keeps_a_held_out_part(corpus_copy, tmp_path):
    for i in range(5):
        write_audio(tmp_path / "bob" / "clean" / f"read{i}.wav", 8.0, seed=10 + i)
    run_user(corpus_copy, tmp_path / "bob", name="bob", folders=("clean",))
    spk = corpus_copy / "speakers" / "bob"
    train = read_data_dir(spk / "fsl_train")
    val = read_data_dir(spk / "fsl_val")
    sources = {v.split()[0].split("=")[1].split("@")[0] for v in val.tables["utt2source"].values()}
    assert sources and not sources & set(train.keys) and train.total_seconds() < 40.0


def test_user_clean_dir_added_later_keeps_the_noisy_part(corpus_copy, tmp_path, caplog):
    base = make_user_folders(tmp_path / "alice")
    spk, audio = corpus_copy / "speakers" / "alice", corpus_copy / "audio" / "user" / "alice"
    run_user(corpus_copy, base, folders=("noisy",))  # zero-shot first
    assert not (spk / "fsl_train").exists()
    assert yaml.safe_load((spk / "meta.yaml").read_text())["has_clean"] is False
    noisy_part = [spk / "pretrain", spk / "preval", audio / "noisy", audio / "mix" / "preval"]
    before = snapshot(*noisy_part)
    marker = (spk / ".noisy.done").read_bytes()
    assert before and "clean_dir" not in yaml.safe_load(marker)

    run_user(corpus_copy, base, folders=("noisy", "clean"))  # then few-shot on the same root
    assert snapshot(*noisy_part) == before and (spk / ".noisy.done").read_bytes() == marker
    assert read_data_dir(spk / "fsl_train", check_audio=True).total_seconds() == pytest.approx(12.0, abs=0.01)
    read_data_dir(spk / "fsl_val", check_audio=True)
    meta = yaml.safe_load((spk / "meta.yaml").read_text())
    assert meta["has_clean"] is True and meta["has_test"] is False
    assert yaml.safe_load((spk / ".done").read_text())["clean_dir"] == str(base / "clean")

    everything = snapshot(spk, audio, corpus_copy / "roles.yaml")
    with caplog.at_level(logging.INFO):
        run_user(corpus_copy, base, folders=("noisy", "clean"))  # same again: a no-op
    assert "alice is complete; nothing to do" in caplog.text
    assert snapshot(spk, audio, corpus_copy / "roles.yaml") == everything

    # A clean part cut short (no marker, a killed write's temporary dir) is cleared and rebuilt.
    fsl = snapshot(spk / "fsl_train", spk / "fsl_val")
    (spk / ".clean.done").unlink()
    (spk / ".fsl_train.tmp999").mkdir()
    (spk / "fsl_train" / "junk").write_text("half written")
    run_user(corpus_copy, base, folders=("noisy", "clean"))
    assert not (spk / ".fsl_train.tmp999").exists() and not (spk / "fsl_train" / "junk").exists()
    assert {k: v[1] for k, v in snapshot(spk / "fsl_train", spk / "fsl_val").items()} == {
        k: v[1] for k, v in fsl.items()
    }  # same content, as the build is seeded
    assert snapshot(*noisy_part) == before

    run_user(corpus_copy, base, folders=("noisy",))  # back to zero-shot: the clean part goes
    assert not (spk / "fsl_train").exists() and not (spk / "fsl_val").exists()
    assert not (audio / "clean").exists() and not (spk / ".clean.done").exists()
    assert yaml.safe_load((spk / "meta.yaml").read_text())["has_clean"] is False
    assert snapshot(*noisy_part) == before


def test_user_changed_noisy_setting_is_refused(corpus_copy, tmp_path):
    base = make_user_folders(tmp_path / "alice")
    run_user(corpus_copy, base, folders=("noisy",))
    spk = corpus_copy / "speakers" / "alice"
    before = snapshot(spk)
    with pytest.raises(ValueError) as err:
        run_user(corpus_copy, base, folders=("noisy", "clean"), extra=["--user_segment_seconds", "10"])
    msg = str(err.value)
    assert f"{spk} was prepared with other settings (segment_seconds: 8.0 -> 10.0)" in msg
    assert "clean_dir" not in msg and "remove it or pick another --user_name" in msg
    assert snapshot(spk) == before and not (spk / "fsl_train").exists()


def test_user_test_part_added_and_removed_alone(corpus_copy, tmp_path):
    base = make_user_folders(tmp_path / "alice")
    spk = corpus_copy / "speakers" / "alice"
    run_user(corpus_copy, base)
    rejected = (spk / "rejected.txt").read_text()
    assert "t2.wav" in rejected
    kept = snapshot(spk / "pretrain", spk / "preval", spk / "fsl_train", spk / "fsl_val")
    run_user(corpus_copy, base, folders=("noisy", "clean"))
    assert not (spk / "test").exists() and yaml.safe_load((spk / "meta.yaml").read_text())["has_test"] is False
    # rejected.txt keeps the kept parts' lines and drops the test part's.
    now = (spk / "rejected.txt").read_text()
    assert "t2.wav" not in now and "corrupt.wav" in now
    assert now == "".join(line + "\n" for line in rejected.splitlines() if "/test/" not in line)
    run_user(corpus_copy, base)
    assert (spk / "rejected.txt").read_text() == rejected
    assert read_data_dir(spk / "test").keys == ["alice-test-t1"]
    assert snapshot(spk / "pretrain", spk / "preval", spk / "fsl_train", spk / "fsl_val") == kept
