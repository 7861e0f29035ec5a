"""local/data.sh: option parsing and the command line it hands to prepare_data."""

import os
import subprocess
from pathlib import Path

import pytest

from espnet2_pse.bin.prepare_data import get_parser

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


def test_unknown_option_and_help():
    proc = run_data_sh("--no_such_option", "1")
    assert proc.returncode != 0 and "unknown option --no_such_option" in proc.stderr
    proc = run_data_sh("--help")
    assert proc.returncode == 0 and "--user_noisy_dir" in proc.stdout


@pytest.mark.parametrize("script", ["local/data.sh", "db.sh"])
def test_scripts_parse(script):
    assert subprocess.run(["bash", "-n", script], cwd=RECIPE).returncode == 0
