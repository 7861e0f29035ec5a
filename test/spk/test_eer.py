"""EER on known scores, trial lists, and the spk_eer entry point."""

import pytest

from espnet2_pse.spk.eer import (
    build_trials,
    compute_eer,
    read_trials,
    write_espnet_trial_dir,
    write_trials,
)
from test.spk.conftest import load_yaml


def test_perfectly_separated_scores_give_zero():
    assert compute_eer([0.9, 0.8, 0.7, 0.1, 0.2, 0.3], [1, 1, 1, 0, 0, 0]) == 0.0


def test_fully_inverted_scores_give_one():
    assert compute_eer([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0]) == pytest.approx(1.0)


def test_known_overlap():
    # Threshold 0.6 rejects one target of four (FRR 1/4) and accepts one non-target (FAR 1/4).
    scores = [0.5, 0.6, 0.7, 0.8, 0.1, 0.2, 0.3, 0.65]
    labels = [1, 1, 1, 1, 0, 0, 0, 0]
    assert compute_eer(scores, labels) == pytest.approx(0.25)


def test_crossing_between_operating_points_is_interpolated():
    # Operating points around the crossing: (FAR, FRR) = (1/2, 1/3) at threshold 0.5 and
    # (0, 2/3) at 0.9 (a tie at 0.5 moves both); the segment crosses FAR = FRR at 0.4.
    scores = [0.2, 0.5, 0.9, 0.1, 0.5]
    labels = [1, 1, 1, 0, 0]
    assert compute_eer(scores, labels) == pytest.approx(0.4)


def test_eer_input_errors():
    with pytest.raises(ValueError, match="target and non-target"):
        compute_eer([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="labels"):
        compute_eer([0.1, 0.2], [1, 2])
    with pytest.raises(ValueError, match="NaN"):
        compute_eer([float("nan"), 0.2], [1, 0])


def test_trials_are_balanced_correct_and_reproducible(tmp_path):
    utt2spk = {f"s{s}_u{u}": f"s{s}" for s in range(3) for u in range(4)}
    trials = build_trials(utt2spk, max_per_class=10, seed=3)
    assert trials == build_trials(utt2spk, max_per_class=10, seed=3)
    labels = [label for _, _, label in trials]
    assert labels.count(1) == labels.count(0) == 10
    assert len({(a, b) for a, b, _ in trials}) == 20
    for a, b, label in trials:
        assert a != b and label == int(utt2spk[a] == utt2spk[b])
    write_trials(tmp_path / "trials", trials)
    assert read_trials(tmp_path / "trials") == trials

    wav = {u: f"/data/{u}.wav" for u in utt2spk}
    write_espnet_trial_dir(trials, wav, tmp_path / "valid")
    first = (tmp_path / "valid" / "trial.scp").read_text().splitlines()
    assert len(first) == 20 and all("*" in line.split()[0] for line in first)
    with pytest.raises(ValueError, match="at least 2 speakers"):
        build_trials({"a": "s", "b": "s"})


def test_spk_eer_entry_point_on_clean_and_noisy_data(spk_corpus, teacher_files, tmp_path):
    from espnet2_pse.bin.spk_eer import main

    common = ["--data_dir", str(spk_corpus["dir"]), "--model_type", "teacher",
              "--train_config", str(teacher_files["config"]),
              "--model_file", str(teacher_files["model"]), "--max_trials_per_class", "8"]
    clean = main(common + ["--output_file", str(tmp_path / "clean.yaml"),
                           "--write_trials", str(tmp_path / "trials")])
    noisy = main(common + ["--noise_scp", str(spk_corpus["noise_scp"]),
                           "--snr_low", "0", "--snr_high", "5",
                           "--output_file", str(tmp_path / "noisy.yaml")])
    saved = load_yaml(tmp_path / "clean.yaml")
    assert saved == clean and saved["condition"] == "clean"
    assert saved["n_target"] == saved["n_nontarget"] == 8
    assert 0.0 <= saved["eer"] <= 1.0
    assert noisy["condition"] == "noisy" and 0.0 <= noisy["eer"] <= 1.0
    assert len(read_trials(tmp_path / "trials")) == 16
