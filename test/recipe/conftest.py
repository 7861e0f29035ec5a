"""Fixtures for the recipe shell scripts: a scratch copy of the recipe and fake Slurm tools."""

import os
import shutil
from pathlib import Path
from typing import Dict

import pytest

from .shell import FAKE_SBATCH, FAKE_SRUN, FAKE_TRAIN_PY, RECIPE, REPO, STUB_DATA_SH, write_exec


@pytest.fixture
def recipe(tmp_path) -> Path:
    """A copy of the recipe's shell files at <tmp>/egs2/pse_ssl/pse1, with <tmp>/tools/venv
    pointing at the real environment and a stub local/data.sh."""
    dst = tmp_path / "egs2" / "pse_ssl" / "pse1"
    dst.mkdir(parents=True)
    for name in ["run.sh", "pse.sh", "path.sh", "cmd.sh"]:
        shutil.copy2(RECIPE / name, dst / name)
    shutil.copytree(RECIPE / "utils", dst / "utils")
    (dst / "conf").mkdir()
    shutil.copy2(RECIPE / "conf" / "slurm.conf", dst / "conf" / "slurm.conf")
    shutil.copytree(RECIPE / "conf" / "tuning", dst / "conf" / "tuning")
    write_exec(dst / "local" / "data.sh", STUB_DATA_SH)
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "venv").symlink_to(REPO / "tools" / "venv")
    return dst


@pytest.fixture
def fake_slurm(tmp_path) -> Dict[str, str]:
    """Environment with fake sbatch/srun first on PATH; their calls go to FAKE_SLURM_LOG."""
    bindir = tmp_path / "fakebin"
    write_exec(bindir / "sbatch", FAKE_SBATCH)
    write_exec(bindir / "srun", FAKE_SRUN)
    write_exec(bindir / "scancel", "#!/usr/bin/env bash\nexit 0\n")
    return {
        "PATH": f"{bindir}:{os.environ['PATH']}",
        "FAKE_SLURM_LOG": str(tmp_path / "slurm_calls.txt"),
    }


@pytest.fixture
def fake_train_module(tmp_path) -> Dict[str, str]:
    """Environment in which `python -m fake_train` is the recording stand-in above."""
    moddir = tmp_path / "pymods"
    moddir.mkdir()
    (moddir / "fake_train.py").write_text(FAKE_TRAIN_PY)
    return {"PYTHONPATH": str(moddir)}
