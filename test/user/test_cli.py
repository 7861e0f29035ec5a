"""Both user commands are argparse entry points with --help and a main(cmd) function."""

import pytest

from espnet2_pse.bin import enhance, personalize


@pytest.mark.parametrize("module, required", [
    (enhance, ["--model", "--out_dir", "--enroll", "--chunk_seconds", "--device"]),
    (personalize, ["--noisy_dir", "--out", "--clean_dir", "--base", "--method", "--dp_predictor_config"]),
])
def test_help_lists_the_options(module, required, capsys):
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert all(option in text for option in required)
    with pytest.raises(SystemExit) as exit_info:
        module.main([])  # required arguments missing
    assert exit_info.value.code == 2


def test_personalize_refuses_bad_arguments_before_any_work(tmp_path, caplog):
    (tmp_path / "rec").mkdir()
    assert personalize.main(["--noisy_dir", str(tmp_path / "rec"), "--out", str(tmp_path / "me.tar")]) == 1
    assert "must be a .zip" in caplog.text
    assert personalize.main(["--noisy_dir", str(tmp_path / "nope"), "--out", str(tmp_path / "me.zip")]) == 1
    assert "--noisy_dir" in caplog.text and "not a directory" in caplog.text
    assert personalize.main(["--noisy_dir", str(tmp_path / "rec"), "--out", str(tmp_path / "me.zip"),
                             "--dp_predictor_config", "x.yaml"]) == 1
    assert "--dp_predictor_model" in caplog.text
    assert list(tmp_path.iterdir()) == [tmp_path / "rec"]  # no work dir created
