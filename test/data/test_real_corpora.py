"""LibriSpeech / FSD50K / MUSAN preparation on tiny trees that mimic the real layouts."""

import csv

import pytest
import soundfile as sf
import yaml

from espnet2_pse.bin.prepare_data import main
from espnet2_pse.data import download
from espnet2_pse.data.download import CorpusMissingError, locate
from espnet2_pse.data.kaldi_dir import read_data_dir
from espnet2_pse.data.real_corpora import PAPER_TARGET_SPEAKERS, PAPER_VALIDATION_SPEAKERS
from test.data.conftest import write_audio

TARGETS, VALIDATION, GENERALIST = ["19", "26"], ["298"], ["103", "1034"]


def make_librispeech(root):
    base = root / "LibriSpeech"
    lines = [";ID  |SEX| SUBSET           |MINUTES| NAME"]
    for n, spk in enumerate(TARGETS + VALIDATION + GENERALIST):
        lines.append(f"{spk:<5}| {'FM'[n % 2]} | train-clean-100  | 25.00 | Reader {spk}")
        chapter = base / "train-clean-100" / spk / "1000"
        for i in range(6):
            write_audio(chapter / f"{spk}-1000-{i:04d}.flac", 4.2 + 0.3 * i, seed=n * 10 + i, fmt="FLAC")
        write_audio(chapter / f"{spk}-1000-0099.flac", 2.0, fmt="FLAC")  # shorter than 4 s: dropped
        (chapter / f"{spk}-1000.trans.txt").write_text("unused\n")
    (base / "train-clean-100" / "103" / "1000" / "103-1000-0050.flac").write_bytes(b"fLaC\x00broken")
    (base / "SPEAKERS.TXT").write_text("\n".join(lines) + "\n")
    return root


def make_fsd50k(root):
    gt = root / "FSD50K.ground_truth"
    gt.mkdir(parents=True)
    dev = [
        ("101", "Bark,Dog,Animal", "train"),
        ("102", "Male_speech_and_man_speaking,Speech", "train"),
        ("103", "Guitar,Music", "train"),
        ("104", "Rain,Water", "train"),
        ("105", "Wind", "val"),
        ("106", "Engine", "val"),
        ("107", "Door", "train"),
        ("108", "Knock", "train"),
    ]
    ev = [("201", "Thunder"), ("202", "Singing,Music"), ("203", "Traffic_noise"), ("104", "Rain")]  # 104: dup
    with open(gt / "dev.csv", "w", newline="") as fp:
        w = csv.writer(fp)
        w.writerow(["fname", "labels", "mids", "split"])
        w.writerows((f, lab, "/m/x", s) for f, lab, s in dev)
    with open(gt / "eval.csv", "w", newline="") as fp:
        w = csv.writer(fp)
        w.writerow(["fname", "labels", "mids"])
        w.writerows((f, lab, "/m/x") for f, lab in ev)
    for f, _, _ in dev:
        if f != "108":  # listed but missing: rejected
            write_audio(
                root / "FSD50K.dev_audio" / f"{f}.wav",
                2.5 if f == "107" else 5.0,
                sr=44100,
                channels=2 if f == "101" else 1,
                seed=int(f),
            )
    for f, _ in ev:
        write_audio(root / "FSD50K.eval_audio" / f"{f}.wav", 4.5, sr=44100, seed=int(f))
    return root


def make_musan(root):
    noise = root / "musan" / "noise"
    for i in range(5):
        write_audio(
            noise / "free-sound" / f"noise-free-sound-{i:04d}.wav", 4.5, sr=8000 if i == 1 else 16000, seed=i
        )
    write_audio(noise / "free-sound" / "noise-free-sound-0009.wav", 1.0)  # too short
    for i in range(2):
        write_audio(noise / "sound-bible" / f"noise-sound-bible-{i:04d}.wav", 5.0, seed=50 + i)
    (noise / "free-sound" / "ANNOTATIONS").write_text("unused\n")
    return root


@pytest.fixture(scope="module")
def real_root(tmp_path_factory):
    base = tmp_path_factory.mktemp("real")
    libri, fsd, musan = make_librispeech(base / "ls"), make_fsd50k(base / "fsd"), make_musan(base / "musan")
    out = base / "data"
    main(
        [
            "--out",
            str(out),
            "--corpus",
            "librispeech",
            "--librispeech",
            str(libri),
            "--fsd50k",
            str(fsd),
            "--musan",
            str(musan),
            "--target_speakers",
            ",".join(TARGETS),
            "--validation_speakers",
            VALIDATION[0],
            "--musan_val_files",
            "2",
            "--split_scale",
            "0.05",
            "--test_mixtures",
            "3",
            "--val_mixtures",
            "2",
            "--download_dir",
            str(base / "downloads"),
            "--nj",
            "1",
        ]
    )
    return base, out


def test_paper_speaker_lists():
    assert len(PAPER_TARGET_SPEAKERS) == 20 and len(PAPER_VALIDATION_SPEAKERS) == 20
    assert not set(PAPER_TARGET_SPEAKERS) & set(PAPER_VALIDATION_SPEAKERS)
    assert PAPER_TARGET_SPEAKERS[:3] == ("19", "26", "39") and PAPER_VALIDATION_SPEAKERS[-1] == "2952"


def test_librispeech_roles_splits_and_conversion(real_root):
    _, out = real_root
    roles = yaml.safe_load((out / "roles.yaml").read_text())
    assert roles == {"target": TARGETS, "validation": VALIDATION, "generalist": GENERALIST}
    meta = yaml.safe_load((out / "speakers" / "19" / "meta.yaml").read_text())
    assert meta["gender"] == "F" and meta["corpus"] == "librispeech"
    pre = read_data_dir(out / "speakers" / "19" / "pretrain", check_audio=True)
    assert all(k.startswith("19-1000-") for k in pre.keys)
    train = read_data_dir(out / "generalist" / "train", check_audio=True)
    assert sorted(set(train.utt2spk.values())) == GENERALIST
    assert "103-1000-0050" not in train.wav and "103-1000-0099" not in train.wav
    assert all(p.endswith(".wav") and p.startswith(str(out / "audio")) for p in train.wav.values())


def test_fsd50k_drops_speech_music_and_maps_splits(real_root):
    _, out = real_root
    keys = {b: read_data_dir(out / "noise" / b).keys for b in ("premix_train", "premix_val", "premix_test")}
    assert keys == {
        "premix_train": ["fsd50k-101", "fsd50k-104"],
        "premix_val": ["fsd50k-105", "fsd50k-106"],
        "premix_test": ["fsd50k-201", "fsd50k-203"],
    }
    fam = read_data_dir(out / "noise" / "premix_train").tables["utt2family"]
    assert fam == {"fsd50k-101": "Bark", "fsd50k-104": "Rain"}
    assert sf.info(read_data_dir(out / "noise" / "premix_train").wav["fsd50k-101"]).samplerate == 16000


def test_musan_last_files_are_validation_and_16k_files_used_in_place(real_root):
    base, out = real_root
    banks = {b: read_data_dir(out / "noise" / b) for b in ("inject_train", "inject_val", "test")}
    assert banks["inject_train"].keys == [
        "musan-noise-free-sound-0000",
        "musan-noise-free-sound-0001",
        "musan-noise-free-sound-0002",
    ]
    assert banks["inject_val"].keys == ["musan-noise-free-sound-0003", "musan-noise-free-sound-0004"]
    assert banks["test"].keys == ["musan-noise-sound-bible-0000", "musan-noise-sound-bible-0001"]
    src = base / "musan" / "musan" / "noise" / "free-sound"
    assert banks["inject_train"].wav["musan-noise-free-sound-0000"] == str(src / "noise-free-sound-0000.wav")
    converted = banks["inject_train"].wav["musan-noise-free-sound-0001"]  # was 8 kHz
    assert converted.startswith(str(out / "audio")) and sf.info(converted).samplerate == 16000


def test_rejected_files_are_listed_with_reasons(real_root):
    base, out = real_root
    lines = dict(line.split("\t") for line in (out / "rejected.txt").read_text().splitlines())
    assert "cannot be decoded" in next(r for p, r in lines.items() if p.endswith("103-1000-0050.flac"))
    assert sum("shorter than 4 s" in r for p, r in lines.items() if p.endswith("-0099.flac")) == 5
    assert "does not exist" in next(r for p, r in lines.items() if p.endswith("108.wav"))
    assert "shorter than 4 s" in next(r for p, r in lines.items() if p.endswith("107.wav"))
    assert "duplicate key fsd50k-104" in lines[str(base / "fsd" / "FSD50K.eval_audio" / "104.wav")]
    assert "shorter than 4 s" in next(r for p, r in lines.items() if p.endswith("noise-free-sound-0009.wav"))
    assert not any(p.endswith(("102.wav", "103.wav", "202.wav")) for p in lines)  # label-filtered, not bad


def test_missing_target_speaker_is_named(real_root, tmp_path):
    base, _ = real_root
    with pytest.raises(ValueError, match=r"speakers \['777'\] not found"):
        main(
            [
                "--out",
                str(tmp_path / "d"),
                "--corpus",
                "librispeech",
                "--librispeech",
                str(base / "ls"),
                "--fsd50k",
                str(base / "fsd"),
                "--musan",
                str(base / "musan"),
                "--target_speakers",
                "19,777",
                "--validation_speakers",
                "298",
                "--nj",
                "1",
            ]
        )


def test_locate_skips_download_when_present(real_root, monkeypatch):
    base, _ = real_root

    def no_network(*args, **kwargs):
        raise AssertionError("download attempted although the corpus is present")

    monkeypatch.setattr(download, "_fetch_and_extract", no_network)
    assert (
        locate("librispeech", str(base / "ls"), True, base / "dl", parts=["train-clean-100"]) == base / "ls"
    )
    assert locate("fsd50k", str(base / "fsd"), True, base / "dl") == base / "fsd"
    assert locate("musan", str(base / "musan"), True, base / "dl") == base / "musan"


def test_missing_corpus_stops_before_writing_anything(tmp_path):
    with pytest.raises(CorpusMissingError, match="librispeech not found at /nowhere"):
        main(
            [
                "--out",
                str(tmp_path / "d"),
                "--corpus",
                "librispeech",
                "--librispeech",
                "/nowhere",
                "--download_dir",
                str(tmp_path / "dl"),
            ]
        )
    assert not (tmp_path / "d").exists()


def test_missing_corpus_without_download_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(download, "_fetch_and_extract", lambda *a: pytest.fail("network used"))
    with pytest.raises(
        CorpusMissingError,
        match=r"librispeech not found at /nowhere.*--download true.*"
        r"openslr.org/resources/12/train-clean-360.tar.gz",
    ):
        locate("librispeech", "/nowhere", False, tmp_path, parts=["train-clean-100", "train-clean-360"])
    with pytest.raises(
        CorpusMissingError, match=r"musan not found at \(not set\).*resources/17/musan.tar.gz"
    ):
        locate("musan", "", False, tmp_path)
    with pytest.raises(CorpusMissingError, match=r"FSD50K.dev_audio.z01"):
        locate("fsd50k", "", False, tmp_path)
