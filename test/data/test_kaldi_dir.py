"""Kaldi data dirs: validation on write, atomic replacement, readable errors."""

import numpy as np
import pytest

from espnet2_pse.data.kaldi_dir import DataDirError, read_data_dir, read_table, write_data_dir
from test.data.conftest import write_audio


@pytest.fixture
def wavs(tmp_path):
    return {
        f"spkA-{i}": str(write_audio(tmp_path / "audio" / f"a{i}.wav", 0.5 + 0.25 * i, seed=i))
        for i in range(3)
    }


def test_round_trip_sorted_with_derived_tables(tmp_path, wavs):
    d = tmp_path / "dir"
    write_data_dir(
        d, wavs, {k: "spkA" for k in wavs}, spk1="same", extra={"utt2snr": {k: "1.00" for k in wavs}}
    )
    lines = (d / "wav.scp").read_text().splitlines()
    assert lines == sorted(lines) and len(lines) == 3
    back = read_data_dir(d, check_audio=True)
    assert back.wav == wavs and back.spk1 == wavs
    assert back.utt2dur == pytest.approx({"spkA-0": 0.5, "spkA-1": 0.75, "spkA-2": 1.0}, abs=1e-4)
    assert (d / "spk2utt").read_text() == "spkA spkA-0 spkA-1 spkA-2\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_duplicate_key_in_table_names_file_line_and_key(tmp_path):
    t = tmp_path / "wav.scp"
    t.write_text("a /x.wav\nb /y.wav\na /z.wav\n")
    with pytest.raises(DataDirError, match=r"wav.scp:3: duplicate key 'a'"):
        read_table(t)
    t.write_text("a\n")
    with pytest.raises(DataDirError, match=r"wav.scp:1: key 'a' has no value"):
        read_table(t)


def test_missing_reference_entry_names_the_key(tmp_path, wavs):
    spk1 = dict(wavs)
    del spk1["spkA-1"]
    with pytest.raises(DataDirError, match=r"spk1.scp: no entry for key 'spkA-1'"):
        write_data_dir(tmp_path / "dir", wavs, {k: "spkA" for k in wavs}, spk1=spk1)
    assert not (tmp_path / "dir").exists()


def test_missing_or_wrong_format_file_is_refused(tmp_path, wavs):
    bad = dict(wavs, **{"spkA-9": str(tmp_path / "nope.wav")})
    with pytest.raises(DataDirError, match=r"key 'spkA-9'.*nope.wav does not exist"):
        write_data_dir(tmp_path / "dir", bad, {k: "spkA" for k in bad})
    odd = dict(wavs, **{"spkA-8": str(write_audio(tmp_path / "r8k.wav", 1.0, sr=8000))})
    with pytest.raises(DataDirError, match=r"8000 Hz.*expected 16000 Hz mono"):
        write_data_dir(tmp_path / "dir", odd, {k: "spkA" for k in odd})
    with pytest.raises(DataDirError, match="not absolute"):
        write_data_dir(tmp_path / "dir", {"spkA-0": "rel.wav"}, {"spkA-0": "spkA"})


def test_speaker_prefix_rule(tmp_path, wavs):
    with pytest.raises(DataDirError, match="does not start with its speaker id 'other'"):
        write_data_dir(tmp_path / "dir", wavs, {k: "other" for k in wavs})


def test_failed_rewrite_keeps_the_old_dir(tmp_path, wavs):
    d = tmp_path / "dir"
    write_data_dir(d, wavs, {k: "spkA" for k in wavs})
    before = (d / "wav.scp").read_text()
    with pytest.raises(DataDirError):
        write_data_dir(d, {"spkA-0": str(tmp_path / "gone.wav")}, {"spkA-0": "spkA"})
    assert (d / "wav.scp").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audio", "dir"]


def test_new_audio_inside_the_dir_uses_final_paths(tmp_path):
    d = tmp_path / "dir"
    path = str(d / "audio" / "spkA-0.wav")
    write_data_dir(d, {"spkA-0": path}, {"spkA-0": "spkA"}, new_audio={"audio/spkA-0.wav": np.full(800, 0.1)})
    assert read_data_dir(d, check_audio=True).utt2dur == {"spkA-0": 0.05}


def test_read_detects_inconsistent_tables(tmp_path, wavs):
    d = tmp_path / "dir"
    write_data_dir(d, wavs, {k: "spkA" for k in wavs})
    with open(d / "utt2spk", "a") as fp:
        fp.write("spkA-7 spkA\n")
    with pytest.raises(DataDirError, match="spkA-7"):
        read_data_dir(d)
