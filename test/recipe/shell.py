"""Helpers for the recipe tests: run bash snippets, and stand-ins for scripts and Slurm."""

import os
import subprocess
from pathlib import Path
from typing import Dict, Optional

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "egs2" / "pse_ssl" / "pse1"

# Stand-in for local/data.sh (the data issue's script): records its arguments and writes the
# one file pse.sh checks after stage 1. It exits with $STUB_DATA_RC.
STUB_DATA_SH = """#!/usr/bin/env bash
echo "$*" >> data_calls.txt
[ "${STUB_DATA_RC:-0}" = 0 ] || exit "${STUB_DATA_RC}"
mkdir -p data
echo "target: [spk_a]" > data/roles.yaml
"""

# Stand-in for a training module: records its argv under --output_dir, exits $FAKE_TRAIN_RC.
FAKE_TRAIN_PY = """import json, os, sys
args = sys.argv[1:]
out = args[args.index("--output_dir") + 1]
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "argv.jsonl"), "a") as f:
    f.write(json.dumps(args) + "\\n")
sys.exit(int(os.environ.get("FAKE_TRAIN_RC", "0")))
"""

# Fake sbatch: logs its arguments, prints a job id, runs the batch script once per array task
# (like `sbatch --wait`) and exits with the worst task code.
FAKE_SBATCH = """#!/usr/bin/env bash
echo "$*" >> "${FAKE_SLURM_LOG}"
array=""
script=""
for a in "$@"; do
    case "$a" in
        --array=*) array=${a#--array=}; array=${array%%%*} ;;
        -*) ;;
        *) script=$a ;;
    esac
done
echo 4242
worst=0
if [ -n "$array" ]; then
    for ((t = ${array%-*}; t <= ${array#*-}; t++)); do
        SLURM_ARRAY_TASK_ID=$t bash "$script"
        rc=$?
        [ $rc -gt $worst ] && worst=$rc
    done
else
    bash "$script"
    worst=$?
fi
exit $worst
"""

# Fake srun: logs its arguments and runs the command once, on "this node".
FAKE_SRUN = """#!/usr/bin/env bash
echo "srun $*" >> "${FAKE_SLURM_LOG}"
while [[ $# -gt 0 && "$1" == -* ]]; do shift; done
exec "$@"
"""


def write_exec(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


def bash(
    script: str, cwd: Path, env: Optional[Dict[str, str]] = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    """Runs a bash snippet; returns the finished process with text stdout/stderr."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        ["bash", "-c", script],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
