"""utils/run.pl (local jobs) and utils/slurm.pl (with fake sbatch/srun on PATH)."""

import shutil
from pathlib import Path

import pytest

from .shell import RECIPE, bash

RUN_PL = RECIPE / "utils" / "run.pl"
SLURM_PL = RECIPE / "utils" / "slurm.pl"


def test_single_job_log_has_command_output_and_accounting(tmp_path):
    # "|" reaches the shell as a pipe; "a b" stays one argument.
    res = bash(f"{RUN_PL} log/one.log printf '[%s]' 'a b' '|' tr a-z A-Z", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout == ""  # the output goes to the log only
    lines = (tmp_path / "log" / "one.log").read_text().splitlines()
    assert lines[0].startswith("# printf")
    assert "[A B]" in lines
    assert lines[-2].startswith("# Accounting: exit_code=0 elapsed=")
    assert "exit code 0" in lines[-1]


def test_single_job_failure_is_reported(tmp_path):
    res = bash(f"{RUN_PL} --gpu 0 --mem 2G --name x bad.log sh -c 'exit 3'", cwd=tmp_path)
    assert res.returncode == 1
    assert "bad.log (exit code 3)" in res.stderr
    assert "# Accounting: exit_code=3" in (tmp_path / "bad.log").read_text()


def test_job_array_substitutes_job_and_names_failed_logs(tmp_path):
    res = bash(
        f"{RUN_PL} JOB=1:3 exp/log/t.JOB.log echo task JOB of 3 '&&' test JOB -ne 2",
        cwd=tmp_path,
    )
    assert res.returncode == 1
    for i in (1, 2, 3):
        text = (tmp_path / "exp" / "log" / f"t.{i}.log").read_text()
        assert text.startswith(f"# echo task {i} of 3 && test {i} -ne 2\n")
        assert f"task {i} of 3\n" in text
        assert f"exit_code={0 if i != 2 else 1} " in text
    assert "1 of 3 job(s) failed" in res.stderr
    assert "exp/log/t.2.log (exit code 1)" in res.stderr
    assert "t.1.log" not in res.stderr and "t.3.log" not in res.stderr


def test_job_array_runs_jobs_in_parallel(tmp_path):
    # A barrier: each job waits until all three have started, which only works when they
    # run at the same time (a job gives up after ~10 s and fails).
    script = tmp_path / "barrier.sh"
    script.write_text(
        "touch started.$1\n"
        "for i in $(seq 100); do [ $(ls started.* | wc -l) -ge 3 ] && exit 0; sleep 0.1; done\n"
        "exit 1\n"
    )
    res = bash(f"{RUN_PL} --max-jobs-run=3 JOB=1:3 log/p.JOB.log bash {script} JOB", cwd=tmp_path)
    assert res.returncode == 0, res.stderr + (tmp_path / "log/p.1.log").read_text()


@pytest.mark.parametrize(
    "args, message",
    [
        ("--bogus 1 x.log true", "unknown option --bogus"),
        ("JOB=1:2 x.log true", "must contain JOB"),
        ("JOB=3:1 x.JOB.log true", "empty job range"),
        ("--num_nodes 2 x.log true", "use slurm.pl"),
        ("--max_jobs_run 0 JOB=1:2 x.JOB.log true", "--max_jobs_run must be a positive integer"),
        ("x.log", "run.pl [options]"),
    ],
)
def test_run_pl_rejects_bad_usage(tmp_path, args, message):
    res = bash(f"{RUN_PL} {args}", cwd=tmp_path)
    assert res.returncode == 1
    assert message in res.stderr


def slurm_calls(env) -> str:
    return Path(env["FAKE_SLURM_LOG"]).read_text()


def test_slurm_array_job_submission_and_failure(tmp_path, fake_slurm):
    conf = tmp_path / "slurm.conf"
    conf.write_text(
        'partition=cpuq\ngpu_partition=gpuq\ngpu_opts="--gres=gpu:{gpu} --constraint=a100"\n'
        'default_time=2:00:00\nextra_opts="--account=proj"\n'
    )
    res = bash(
        f"{SLURM_PL} --config {conf} --gpu 2 --num_threads 4 --mem 8G --name stats "
        f"--max_jobs_run 2 JOB=1:3 exp/log/s.JOB.log echo part JOB '&&' test JOB -ne 3",
        cwd=tmp_path,
        env=fake_slurm,
    )
    assert res.returncode == 1
    sbatch = slurm_calls(fake_slurm).splitlines()[0].split()
    for opt in [
        "--wait",
        "--job-name=stats",
        "--array=1-3%2",
        "--partition=gpuq",
        "--gres=gpu:2",
        "--constraint=a100",
        "--cpus-per-task=4",
        "--mem=8G",
        "--time=2:00:00",
        "--account=proj",
    ]:
        assert opt in sbatch, (opt, sbatch)
    assert "--partition=cpuq" not in sbatch
    assert sbatch[-1] == "exp/log/q/s.all.sh"
    # Every task ran through run.pl: same log header, substitution and accounting.
    for i in (1, 2, 3):
        text = (tmp_path / "exp" / "log" / f"s.{i}.log").read_text()
        assert text.startswith(f"# echo part {i} && test {i} -ne 3\n")
        assert f"part {i}\n" in text
    assert "1 of 3 task(s) failed" in res.stderr
    assert "exp/log/s.3.log (exit code 1)" in res.stderr


def test_slurm_cpu_job_uses_cpu_partition_and_nodes(tmp_path, fake_slurm):
    conf = tmp_path / "slurm.conf"
    conf.write_text("partition=cpuq\ngpu_partition=gpuq\n")
    res = bash(
        f"{SLURM_PL} --config {conf} --gpu 0 --num_nodes 2 train.log srun --export=ALL echo hi",
        cwd=tmp_path,
        env=fake_slurm,
    )
    assert res.returncode == 0, res.stderr
    sbatch, srun = slurm_calls(fake_slurm).splitlines()
    assert "--partition=cpuq" in sbatch.split()
    assert "--nodes=2" in sbatch.split() and "--ntasks-per-node=1" in sbatch.split()
    assert not any(o.startswith("--gres") or o.startswith("--array") for o in sbatch.split())
    assert srun == "srun --export=ALL echo hi"
    assert "\nhi\n" in (tmp_path / "train.log").read_text()


def test_slurm_default_config_is_conf_slurm_conf(tmp_path, fake_slurm):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "slurm.conf").write_text("partition=from_default_conf\n")
    res = bash(f"{SLURM_PL} a.log true", cwd=tmp_path, env=fake_slurm)
    assert res.returncode == 0, res.stderr
    assert "--partition=from_default_conf" in slurm_calls(fake_slurm).split()


def test_slurm_without_sbatch_or_with_missing_config(tmp_path, fake_slurm):
    res = bash(f"{SLURM_PL} --config nope.conf a.log true", cwd=tmp_path, env=fake_slurm)
    assert res.returncode == 1 and "config file not found: nope.conf" in res.stderr
    # PATH with bash and coreutils only: no sbatch.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ["bash", "dirname", "basename", "mkdir"]:
        (bindir / tool).symlink_to(shutil.which(tool))
    res = bash(f"{SLURM_PL} a.log true", cwd=tmp_path, env={"PATH": str(bindir)})
    assert res.returncode == 1
    assert "sbatch not found" in res.stderr
