"""The paper's ascending-duration partition and the d-second FSL subset."""

import numpy as np
import pytest

from espnet2_pse.data.kaldi_dir import read_data_dir, write_data_dir
from espnet2_pse.data.splits import PAPER_SPLIT_SECONDS, SplitError, split_by_duration, take_seconds
from test.data.conftest import write_audio


@pytest.mark.parametrize("seed, scale", [(0, 1.0), (1, 1.0), (2, 0.25), (3, 0.5)])
def test_split_durations_within_one_utterance_of_target(seed, scale):
    rng = np.random.default_rng(seed)
    durations = {f"u{i:03d}": float(d) for i, d in enumerate(rng.uniform(4.0, 16.0, 150))}
    splits = split_by_duration(durations, PAPER_SPLIT_SECONDS, scale)
    assert list(splits) == ["test", "val", "train", "preval", "pretrain"]
    assert sorted(k for keys in splits.values() for k in keys) == sorted(durations)
    longest = max(durations.values())
    for name, seconds in PAPER_SPLIT_SECONDS:
        got = sum(durations[k] for k in splits[name])
        assert abs(got - seconds * scale) <= longest, (name, got)
    # Ascending order: every utterance of a split is no longer than any of the next split.
    order = [splits[n] for n in ["test", "val", "train", "preval", "pretrain"]]
    for a, b in zip(order, order[1:]):
        assert max(durations[k] for k in a) <= min(durations[k] for k in b)


def test_boundaries_fall_on_closest_cumulative_duration():
    durations = {"a": 4.0, "b": 5.0, "c": 6.0, "d": 7.0, "e": 8.0, "f": 9.0, "g": 10.0}
    splits = split_by_duration(durations, [("test", 8.0), ("val", 6.0)])
    # cumulative 4, 9, 15, 22: closest to 8 is 9 (a, b); closest to 14 is 15 (c).
    assert splits == {"test": ["a", "b"], "val": ["c"], "pretrain": ["d", "e", "f", "g"]}


def test_every_split_gets_an_utterance_even_if_targets_are_tiny():
    durations = {k: 5.0 for k in "abcdef"}
    splits = split_by_duration(durations, PAPER_SPLIT_SECONDS, scale=0.01)
    assert all(len(v) == 1 for k, v in splits.items() if k != "pretrain")


def test_too_little_audio_is_a_clear_error():
    with pytest.raises(SplitError, match="spk7: 3 utterances"):
        split_by_duration({"a": 5.0, "b": 5.0, "c": 5.0}, who="spk7")
    with pytest.raises(SplitError, match="leaves nothing for 'pretrain'"):
        split_by_duration({"a": 5.0, "b": 5.0, "c": 5.0, "d": 5.0, "e": 100.0}, who="spk7")


@pytest.fixture
def src_dir(tmp_path):
    wav = {f"s-{i}": str(write_audio(tmp_path / "a" / f"{i}.wav", 4.0 + i, seed=i)) for i in range(3)}
    return write_data_dir(tmp_path / "src", wav, {k: "s" for k in wav}, spk1="same").path


@pytest.mark.parametrize("seconds", [3.0, 4.0, 6.5, 12.0])
def test_take_seconds_gives_exact_total_and_decodable_cut(tmp_path, src_dir, seconds):
    d = take_seconds(src_dir, tmp_path / f"fsl{seconds}", seconds)
    back = read_data_dir(d.path, check_audio=True)
    assert back.total_seconds() == pytest.approx(seconds, abs=1e-4)
    assert back.wav == back.spk1
    src = read_data_dir(src_dir)
    for key in back.keys[:-1]:
        assert back.wav[key] == src.wav[key]  # whole utterances are referenced, not copied
    last = back.keys[-1]
    if back.utt2dur[last] < src.utt2dur[last]:
        assert back.wav[last].startswith(str(d.path / "audio"))


def test_take_seconds_cuts_reference_with_the_mixture(tmp_path):
    noisy = {f"s-{i}": str(write_audio(tmp_path / "n" / f"{i}.wav", 4.0, seed=i)) for i in range(2)}
    clean = {f"s-{i}": str(write_audio(tmp_path / "c" / f"{i}.wav", 4.0, seed=10 + i)) for i in range(2)}
    src = write_data_dir(
        tmp_path / "src",
        noisy,
        {k: "s" for k in noisy},
        spk1=clean,
        extra={"utt2snr": {k: "0.00" for k in noisy}},
    )
    d = read_data_dir(take_seconds(src.path, tmp_path / "dst", 6.0).path, check_audio=True)
    assert d.utt2dur == pytest.approx({"s-0": 4.0, "s-1": 2.0})
    assert d.spk1["s-1"] != d.wav["s-1"] and d.tables["utt2snr"] == {"s-0": "0.00", "s-1": "0.00"}


def test_take_seconds_warns_when_short(tmp_path, src_dir, caplog):
    d = take_seconds(src_dir, tmp_path / "all", 100.0)
    assert d.total_seconds() == pytest.approx(15.0, abs=1e-3)
    assert "holds only 15.00 s" in caplog.text
