"""``personalize``'s options: the defaults each option takes from the others, and the
mistakes refused before any data or training (no run needed)."""

import pytest

from espnet2_pse.bin import personalize


@pytest.mark.parametrize("durations, epochs", [
    ([5.0], 4),  # 24 batches a second: 120, in epochs of 60 segments x 4 crops of 2 s / 8 = 30
    ([2.0, 2.5], 15),  # 108 batches, in epochs of 60 x 1 crop / 8 = 7
    ([8.0] * 8, 8),  # 1536 batches capped at 400, in epochs of 60 x 7 crops / 8 = 52
])
def test_clean_only_training_length_follows_the_clean_seconds(tmp_path, durations, epochs):
    from espnet2_pse.bin.personalize_config import clean_only_epochs
    from espnet2_pse.data.kaldi_dir import DataDir

    fsl_train = DataDir(tmp_path, {"utt2dur": {f"u{i}": str(d) for i, d in enumerate(durations)}})
    args = personalize.get_parser().parse_args(["--clean_dir", ".", "--out", "me.zip"])
    personalize.check_args(args)
    assert args.fsl_max_epoch is None  # set once the clean speech is prepared
    assert clean_only_epochs(fsl_train, args) == epochs
    args = personalize.get_parser().parse_args(["--clean_dir", ".", "--noisy_dir", ".", "--out", "me.zip"])
    personalize.check_args(args)
    assert args.fsl_max_epoch == personalize.DEFAULT_FSL_EPOCHS  # after zero-shot: fixed


@pytest.mark.parametrize("options, message", [
    ([], "give --noisy_dir .*, --clean_dir .* or both"),
    (["--clean_dir", ".", "--base", "none"], "--clean_dir alone fine-tunes a --base model"),
])
def test_nothing_to_learn_from_is_refused(options, message):
    with pytest.raises(ValueError, match=message):
        personalize.check_args(personalize.get_parser().parse_args(["--out", "me.zip", *options]))


@pytest.mark.parametrize("options, weight", [
    ([], personalize.DEFAULT_TEACHER_WEIGHT),  # pseudo_se from the shipped base
    (["--method", "contrastive_mixtures"], 0.0),
    (["--base", "none"], 0.0),
    (["--teacher_weight", "0"], 0.0),
])
def test_teacher_weight_and_keep_cleanest_defaults_follow_method_and_base(tmp_path, options, weight):
    args = personalize.get_parser().parse_args(["--noisy_dir", str(tmp_path), "--out", "me.zip", *options])
    personalize.check_args(args)
    assert args.teacher_weight == weight
    # The recordings are ranked by the teacher: without one, all of them are kept.
    assert args.keep_cleanest == (personalize.DEFAULT_KEEP_CLEANEST if weight else 1.0)


@pytest.mark.parametrize("options, message", [
    (["--base", "none", "--teacher_weight", "0.5"], "needs a --base model as the teacher"),
    (["--method", "contrastive_mixtures", "--teacher_weight", "0.5"], "is a pseudo_se option"),
    (["--teacher_weight", "1.5"], r"must be in \[0, 1\], got 1.5"),
    (["--teacher_weight_above", "2"], r"--teacher_weight_above must be in \[0, 1\], got 2"),
    (["--teacher_weight", "0", "--teacher_weight_above", "1"], "--teacher_weight_above needs a teacher"),
    (["--teacher_weight_noise", "-1"], r"--teacher_weight_noise must be in \[0, 1\], got -1"),
    (["--keep_cleanest", "0"], r"--keep_cleanest must be in \(0, 1\], got 0"),
    (["--base", "none", "--keep_cleanest", "0.5"], "--keep_cleanest ranks the recordings with the teacher"),
    (["--base", "none", "--teacher_weight_noise", "1"], "--teacher_weight_noise needs a teacher"),
    (["--teacher_weight_above", "1", "--teacher_split_hz", "8000"], r"--teacher_split_hz must be in \(0, 8000\) Hz"),
    (["--spectral_reference", "teacher", "--teacher_weight", "0"], "needs a spectral term .* and a teacher"),
    (["--spectral_reference", "teacher", "--spectral_weight", "0"], "needs a spectral term .* and a teacher"),
    (["--spectral_reference", "teacher", "--dp_predictor_config", "c.yaml", "--dp_predictor_model", "m.pth"],
     "cannot be combined with DP"),
])
def test_teacher_weight_mistakes_are_refused(tmp_path, options, message):
    args = personalize.get_parser().parse_args(["--noisy_dir", str(tmp_path), "--out", "me.zip", *options])
    with pytest.raises(ValueError, match=message):
        personalize.check_args(args)


def test_config_mistakes_are_refused_before_training(tmp_path):
    """Both YAML files are read before the zero-shot step, and a mistake names the file (or
    the option)."""
    broken, listed = tmp_path / "broken.yaml", tmp_path / "listed.yaml"
    broken.write_text("criterions: [\n")
    listed.write_text("- max_epoch: 3\n")
    for options, error, message in [
        (["--fsl_config", str(listed)], ValueError, "--fsl_config sets options of the few-shot step, which needs "
                                                     "--clean_dir"),
        (["--clean_dir", str(tmp_path), "--fsl_config", str(broken)], ValueError,
         f"--fsl_config {broken} is not valid YAML"),
        (["--config", str(listed)], ValueError, f"--config {listed} must hold a mapping of ESPnet training options"),
        (["--config", str(tmp_path / "missing.yaml")], FileNotFoundError, "missing.yaml"),
        (["--fsl_perceptual_weights", "5", "-1"], ValueError, r"--fsl_perceptual_weights must be >= 0"),
        (["--clean_dir", str(tmp_path), "--chunk_seconds", "0.3"], ValueError,
         r"--chunk_seconds 0.3 is too short for the few-shot PESQ and eSTOI terms \(they need 0.40 s\)"),
    ]:
        args = personalize.get_parser().parse_args(["--noisy_dir", str(tmp_path), "--out", "me.zip", *options])
        with pytest.raises(error, match=message):
            personalize.check_args(args)


@pytest.mark.parametrize("options, prob", [([], personalize.DEFAULT_TALKER_PROB),
                                           (["--method", "contrastive_mixtures"], 0.0),
                                           (["--talker_prob", "0"], 0.0)])
def test_talker_default_follows_method(tmp_path, options, prob):
    args = personalize.get_parser().parse_args(["--noisy_dir", str(tmp_path), "--out", "me.zip", *options])
    personalize.check_args(args)
    assert args.talker_prob == prob


@pytest.mark.parametrize("options, message", [
    (["--method", "contrastive_mixtures", "--talker_prob", "0.5"], "interfering talkers are a pseudo_se option"),
    (["--talker_prob", "1.5"], r"--talker_prob and --talker_alone_prob must be in \[0, 1\]"),
    (["--talker_tir_range", "10", "0"], "LOW must not exceed HIGH"),
])
def test_talker_mistakes_are_refused(tmp_path, options, message):
    args = personalize.get_parser().parse_args(["--noisy_dir", str(tmp_path), "--out", "me.zip", *options])
    with pytest.raises(ValueError, match=message):
        personalize.check_args(args)
