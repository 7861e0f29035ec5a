"""local/data.sh: option parsing and the command line it hands to prepare_data."""

import os
import subprocess
from pathlib import Path

import pytest

from espnet2_pse.bin.prepare_data import _CORPUS_DEFAULTS, get_parser

RECIPE = Path(__file__).resolve().parents[2] / "egs2" / "pse_ssl" / "pse1"


def run_data_sh(*args, env=None):
    return subprocess.run(
        ["bash", "local/data.sh", *args],
        cwd=RECIPE,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def test_options_reach_prepare_data():
    # --python echo prints the command instead of running it.
    proc = run_data_sh(
        "--python",
        "echo",
        "--out",
        "/tmp/d",
        "--split_scale",
        "0.5",
        "--user_noisy_dir",
        "/rec",
        "--target_speakers",
        "19,26",
        "--corpus",
        "librispeech",
        env={"LIBRISPEECH": "/corpora/ls", "MUSAN": ""},
    )
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("-m espnet2_pse.bin.prepare_data"))
    argv = line.split()[2:]
    assert "--test_mixtures" not in argv and "--user_clean_dir" not in argv  # empty options are left out
    args = get_parser().parse_args(argv)
    assert (args.out, args.corpus, args.split_scale, args.user_noisy_dir) == (
        "/tmp/d",
        "librispeech",
        0.5,
        "/rec",
    )
    assert args.target_speakers == ["19", "26"] and args.librispeech == "/corpora/ls"
    assert args.test_mixtures is None and args.nj == 2 and args.download is False


def test_user_corpus_passes_through():
    proc = run_data_sh(
        "--python", "echo", "--corpus", "user", "--user_noisy_dir", "/rec", "--user_name", "ann"
    )
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("-m espnet2_pse.bin.prepare_data"))
    args = get_parser().parse_args(line.split()[2:])
    assert (args.corpus, args.base_corpus, args.user_name, args.user_noisy_dir) == (
        "user",
        "embedded",
        "ann",
        "/rec",
    )


def prepare_data_argv(stdout):
    """The arguments local/data.sh handed to prepare_data (--python echo prints them)."""
    line = next(ln for ln in stdout.splitlines() if ln.startswith("-m espnet2_pse.bin.prepare_data"))
    return line.split()[2:]


def test_debian_real_options_reach_prepare_data():
    proc = run_data_sh(
        "--python", "echo", "--corpus", "debian_real", "--debian_targets", "fillets_cs_m,festru_ru",
        "--debian_target_minutes", "5", "--debian_noise_minutes", "2.5",
        env={"DEBIAN_REAL": "/srv/debian"},  # db.sh's default for --debian_dir
    )
    assert proc.returncode == 0, proc.stderr
    argv = prepare_data_argv(proc.stdout)
    assert "--debian_other_minutes" not in argv and "--split_scale" not in argv  # empty: left out
    args = get_parser().parse_args(argv)
    assert (args.corpus, args.debian_dir, args.debian_targets) == (
        "debian_real", "/srv/debian", ["fillets_cs_m", "festru_ru"])
    assert (args.debian_target_minutes, args.debian_other_minutes, args.debian_noise_minutes) == (5.0, 0.0, 2.5)
    # No split option given: prepare_data applies the corpus's own defaults.
    assert (args.split_scale, args.test_mixtures, args.val_mixtures) == (None, None, None)
    assert _CORPUS_DEFAULTS["debian_real"] == {"split_scale": 2.0, "test_mixtures": 30, "val_mixtures": 32}
    assert "fetch_debian" not in proc.stdout  # nothing is downloaded unless asked


def test_debian_real_download_fetches_the_packages_first():
    proc = run_data_sh("--python", "echo", "--corpus", "debian_real", "--download", "true",
                       "--debian_dir", "/srv/deb")
    assert proc.returncode == 0, proc.stderr
    calls = [ln for ln in proc.stdout.splitlines() if ln.startswith("-m ")]
    assert calls[0] == "-m espnet2_pse.bin.fetch_debian --debian_dir /srv/deb"
    assert get_parser().parse_args(calls[1].split()[2:]).debian_dir == "/srv/deb"
    # A user on top of debian_real needs the packages too; the other corpora do not.
    proc = run_data_sh("--python", "echo", "--corpus", "user", "--base_corpus", "debian_real",
                       "--user_noisy_dir", "/rec", "--download", "true", env={"DEBIAN_REAL": ""})
    assert "-m espnet2_pse.bin.fetch_debian" in proc.stdout.splitlines()
    proc = run_data_sh("--python", "echo", "--download", "true")
    assert proc.returncode == 0 and "fetch_debian" not in proc.stdout


def test_unknown_option_and_help():
    proc = run_data_sh("--no_such_option", "1")
    assert proc.returncode != 0 and "unknown option --no_such_option" in proc.stderr
    proc = run_data_sh("--help")
    assert proc.returncode == 0 and "--user_noisy_dir" in proc.stdout
    assert "embedded|librispeech|debian_real|user" in proc.stdout and "--debian_targets" in proc.stdout


@pytest.mark.parametrize("script", ["local/data.sh", "db.sh"])
def test_scripts_parse(script):
    assert subprocess.run(["bash", "-n", script], cwd=RECIPE).returncode == 0
