"""run.sh / pse.sh / path.sh / cmd.sh: stage selection, done markers, training launch."""

import json
import os
import re
import shutil
import zipfile

import pytest
import yaml

from .shell import RECIPE, REPO, bash, write_exec

# Stand-in for the python that local/data.sh calls: records its arguments and writes the one
# file pse.sh checks after stage 1.
FAKE_PYTHON = """#!/usr/bin/env bash
echo "$*" >> python_calls.txt
mkdir -p data
echo "target: [spk_a]" > data/roles.yaml
"""


def started_stages(res):
    """Stage numbers whose start line pse.sh logged."""
    return [int(n) for n in re.findall(r"Stage (\d)/8 \(.*\): start$", res.stderr, re.M)]


def data_calls(recipe):
    path = recipe / "data_calls.txt"
    return path.read_text().splitlines() if path.exists() else []


def test_run_sh_help_lists_corpus_and_stage_options(recipe):
    res = bash("./run.sh --help", cwd=recipe)
    assert res.returncode == 0, res.stderr
    for text in ["--corpus NAME", "embedded librispeech debian_real user", "--stop_stage N", "--fsl_durations",
                 "--num_nodes N", "--hf_repo"]:
        assert text in res.stdout, text
    assert data_calls(recipe) == []  # help runs nothing


def test_stage_range_starts_at_stage_and_stops_on_missing_inputs(recipe):
    res = bash("./pse.sh --stage 2 --stop-stage 3", cwd=recipe)
    assert res.returncode != 0
    assert started_stages(res) == [2]  # stage 1 not run, stage 3 never reached
    assert "data/roles.yaml not found: run stage 1 first" in res.stderr
    assert "Stage 2 (format / filter / collect stats): FAILED" in res.stderr
    assert data_calls(recipe) == []


def test_stage_1_runs_data_sh_with_corpus_options_then_skips_on_rerun(recipe):
    cmd = "./run.sh --corpus user --local_data_opts '--user_noisy_dir /my/recordings' --stop_stage 1"
    res = bash(cmd, cwd=recipe)
    assert res.returncode == 0, res.stderr
    assert started_stages(res) == [1]
    assert data_calls(recipe) == ["--corpus user --user_noisy_dir /my/recordings"]
    marker = recipe / "exp" / "done_markers" / "stage1_data"
    assert marker.read_text().strip() == "local/data.sh --corpus user --user_noisy_dir /my/recordings"

    res = bash(cmd, cwd=recipe)
    assert res.returncode == 0, res.stderr
    assert "Stage 1/8 (data preparation): skipped, already done" in res.stderr
    assert len(data_calls(recipe)) == 1

    # Other corpus options make the marker stale: the data is prepared again.
    res = bash("./run.sh --stop_stage 1", cwd=recipe)
    assert res.returncode == 0, res.stderr
    assert data_calls(recipe)[-1] == "--corpus embedded"
    # So does a missing output.
    (recipe / "data" / "roles.yaml").unlink()
    res = bash("./run.sh --stop_stage 1", cwd=recipe)
    assert len(data_calls(recipe)) == 3


def test_run_sh_debian_real_reaches_prepare_data(recipe, tmp_path):
    """run.sh --corpus debian_real goes through pse.sh and the real local/data.sh to prepare_data."""
    from espnet2_pse.bin.prepare_data import get_parser  # only this test needs the data package

    shutil.copy2(RECIPE / "local" / "data.sh", recipe / "local" / "data.sh")
    shutil.copy2(RECIPE / "db.sh", recipe / "db.sh")
    fake = write_exec(tmp_path / "fakebin" / "python", FAKE_PYTHON)
    opts = f"--python {fake} --debian_targets fillets_cs_m,fillets_cs_v"
    res = bash(f"./run.sh --corpus debian_real --local_data_opts '{opts}' --stop_stage 1", cwd=recipe,
               env={"DEBIAN_REAL": "/srv/debian"})
    assert res.returncode == 0, res.stderr
    assert started_stages(res) == [1]
    (call,) = (recipe / "python_calls.txt").read_text().splitlines()
    argv = call.split()
    assert argv[:2] == ["-m", "espnet2_pse.bin.prepare_data"]
    args = get_parser().parse_args(argv[2:])
    assert (args.corpus, args.debian_dir, args.debian_targets) == (
        "debian_real", "/srv/debian", ["fillets_cs_m", "fillets_cs_v"])
    marker = recipe / "exp" / "done_markers" / "stage1_data"
    assert marker.read_text().strip() == f"local/data.sh --corpus debian_real {opts}"


def test_unknown_corpus_is_rejected(recipe):
    res = bash("./run.sh --corpus debian --stop_stage 1", cwd=recipe)
    assert res.returncode == 1
    assert "unknown --corpus 'debian' (choose from: embedded librispeech debian_real user)" in res.stderr
    assert data_calls(recipe) == []


def test_later_stages_use_every_target_of_roles_yaml(recipe):
    """Without --speakers the stages personalize for all targets (debian_real has six)."""
    dump = recipe / "dump"
    dump.mkdir()
    targets = ["asterisk_it_menardi", "festru_ru", "fillets_cs_m", "fillets_cs_v", "fillets_nl_m", "fillets_nl_v"]
    (dump / "roles.yaml").write_text(
        "target: [" + ", ".join(targets) + "]\nvalidation: [qabcs_en]\ngeneralist: [hedgewars_pirate]\n")
    res = bash("source ./pse.sh; setup; target_speakers; speakers='festru_ru'; target_speakers", cwd=recipe)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [" ".join(targets), "festru_ru"]


def test_stage_1_failure_stops_and_leaves_no_marker(recipe):
    res = bash("./pse.sh --stop_stage 2", cwd=recipe, env={"STUB_DATA_RC": "4"})
    assert res.returncode == 4
    assert "Stage 1 (data preparation): FAILED (exit code 4)" in res.stderr
    assert "Stage 2/8" not in res.stderr
    assert not (recipe / "exp" / "done_markers" / "stage1_data").exists()


def test_stage_1_without_data_sh_names_it(recipe):
    (recipe / "local" / "data.sh").unlink()
    res = bash("./pse.sh --stop_stage 1", cwd=recipe)
    assert res.returncode == 1
    assert "local/data.sh not found" in res.stderr


@pytest.mark.parametrize(
    "opts, message",
    [
        ("--stage 9", "--stage must be between 1 and 8"),
        ("--stage 5 --stop_stage 2", "--stage 5 is after --stop_stage 2"),
        ("--sizes 'tiny huge'", "unknown size 'huge'"),
        ("--methods 'cm magic'", "unknown method 'magic'"),
        ("--fsl_durations '5 -3'", "'-3' is not a positive number"),
        ("--ngpu two", "--ngpu must be a non-negative integer"),
        ("--num_nodes 2", "--num_nodes 2 needs a cluster"),
        ("--skip_upload_hf false", "needs --hf_repo"),
        ("--cmd_backend sge", "unknown cmd_backend 'sge'"),
        ("--spk_encoder maybe", "--spk_encoder takes true or false, got 'maybe'"),
        ("--generalist_speed_perturb '0.9 1.0'", "--generalist_speed_perturb: '1.0' is not a speed factor"),
        ("--spk_teacher ge2e", "--spk_teacher must be ecapa or resemblyzer, got 'ge2e'"),
        ("--refine_config conf/nope.yaml", "--refine_config: file not found: conf/nope.yaml"),
        ("--datadir elsewhere", "--datadir is not an option"),
        ("--stage 1 extra", "unexpected arguments: extra"),
    ],
)
def test_bad_options_are_rejected_before_any_stage(recipe, opts, message):
    res = bash(f"./pse.sh {opts}", cwd=recipe)
    assert res.returncode == 1
    assert message in res.stderr
    assert "Stage 1/8" not in res.stderr and data_calls(recipe) == []


def source_and_launch(recipe, env, body):
    """Sources pse.sh (functions only), sets up its environment, then runs body."""
    return bash(f"source ./pse.sh\n{body}", cwd=recipe, env=env)


def argv_lines(exp):
    return [json.loads(l) for l in (exp / "argv.jsonl").read_text().splitlines()]


def test_launch_train_local_trains_once_and_resumes_after_failure(recipe, fake_train_module):
    exp = recipe / "exp" / "gen_tiny"
    body = f"setup; launch_train {exp} fake_train --config conf/x.yaml --max_epoch 2"

    res = source_and_launch(recipe, {**fake_train_module, "FAKE_TRAIN_RC": "3"}, body)
    assert res.returncode != 0
    assert not (exp / ".done").exists()
    assert "train.log" in res.stderr  # launch shows the log of the failed run

    res = source_and_launch(recipe, fake_train_module, body)
    assert res.returncode == 0, res.stderr
    assert (exp / ".done").exists()
    runs = argv_lines(exp)
    assert len(runs) == 2
    for argv in runs:  # both attempts resume from whatever checkpoint exists
        assert argv[:8] == ["--ngpu", "0", "--resume", "true", "--output_dir", str(exp),
                            "--config", "conf/x.yaml"]
    log = (exp / "train.log").read_text()
    assert log.startswith("# python3 -m fake_train") and "exit_code=0" in log

    res = source_and_launch(recipe, fake_train_module, body)
    assert res.returncode == 0, res.stderr
    assert "already trained" in res.stderr
    assert len(argv_lines(exp)) == 2


def test_launch_train_multi_node_goes_through_slurm_and_srun(recipe, fake_train_module, fake_slurm):
    exp = recipe / "exp" / "gen_large"
    body = f"cmd_backend=slurm; num_nodes=2; ngpu=0; setup; launch_train {exp} fake_train --config c.yaml"
    res = source_and_launch(recipe, {**fake_train_module, **fake_slurm}, body)
    assert res.returncode == 0, res.stderr
    (argv,) = argv_lines(exp)
    for pair in [("--dist_launcher", "slurm"), ("--dist_backend", "gloo"), ("--resume", "true")]:
        assert pair[1] == argv[argv.index(pair[0]) + 1]
    init = argv[argv.index("--dist_init_method") + 1]
    assert init.startswith(f"file://{exp}/.dist_init_")
    sbatch, srun = open(fake_slurm["FAKE_SLURM_LOG"]).read().splitlines()
    assert "--nodes=2" in sbatch.split() and "--job-name=gen_large" in sbatch.split()
    assert srun.startswith("srun --export=ALL python3 -m fake_train")


def test_markers_record_signatures(recipe):
    res = bash(
        "source ./pse.sh; stage_done s5/spk_a 'cfg=a' && echo early; mark_done s5/spk_a 'cfg=a'; "
        "stage_done s5/spk_a 'cfg=a' && echo same; stage_done s5/spk_a 'cfg=b' || echo changed",
        cwd=recipe,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["same", "changed"]
    assert (recipe / "exp" / "done_markers" / "s5" / "spk_a").read_text() == "cfg=a\n"


def test_path_sh_builds_missing_venv_and_sets_environment(recipe, tmp_path):
    # No tools/venv yet: path.sh must run `make -C <repo>/tools`; a fake make builds a venv
    # whose activate script only marks itself.
    (tmp_path / "tools" / "venv").unlink()
    fakebin = tmp_path / "fakebin_make"
    write_exec(
        fakebin / "make",
        '#!/usr/bin/env bash\necho "make $*" >> "$MAKE_LOG"\n'
        'mkdir -p "$2/venv/bin"\necho "export VENV_ACTIVATED=1" > "$2/venv/bin/activate"\n',
    )
    env = {"PATH": f"{fakebin}:/usr/bin:/bin", "MAKE_LOG": str(tmp_path / "make.log")}
    show = "set -euo pipefail; . ./path.sh; echo $VENV_ACTIVATED $OMP_NUM_THREADS $PYTHONIOENCODING; command -v run.pl"
    res = bash(show, cwd=recipe, env=env)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "make.log").read_text() == f"make -C {tmp_path}/tools\n"
    assert res.stdout.split() == ["1", "1", "UTF-8", str(recipe / "utils" / "run.pl")]
    res = bash(show, cwd=recipe, env=env)  # built now: no second make
    assert res.returncode == 0 and len((tmp_path / "make.log").read_text().splitlines()) == 1


def test_cmd_sh_selects_the_runner(recipe):
    res = bash("cmd_backend=slurm; . ./cmd.sh; echo $cuda_cmd; unset cmd_backend; . ./cmd.sh; echo $train_cmd",
               cwd=recipe)
    assert res.stdout.splitlines() == ["slurm.pl --config conf/slurm.conf", "run.pl"]


def test_speaker_encoder_stage_needs_the_speaker_sets(recipe):
    """Stage 3 names the missing speaker-encoder sets; --spk_encoder false skips that branch."""
    res = bash("./pse.sh --stage 3 --stop_stage 3 --methods pseudo_se", cwd=recipe)
    assert res.returncode == 1
    assert "no speaker-encoder sets in dump/spk" in res.stderr and "--spk_encoder false" in res.stderr
    res = bash("./pse.sh --stage 3 --stop_stage 3 --methods pseudo_se --spk_encoder false", cwd=recipe)
    assert res.returncode == 0, res.stderr
    assert "the SNR predictor is not needed" in res.stderr


def test_results_older_than_a_retrained_model_are_removed(tmp_path):
    """Stage 3 redoes EERs and enrollments whose teacher/student was retrained since."""
    for name, age in (("old.yaml", 300), ("model.pth", 200), ("new.yaml", 100)):
        (tmp_path / name).write_text("x")
        os.utime(tmp_path / name, (1e9 - age, 1e9 - age))
    lib = RECIPE / "utils" / "spk_lib.sh"
    res = bash(f". {lib}; remove_older_than model.pth old.yaml new.yaml missing.yaml", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pth", "new.yaml"]
    res = bash(f". {lib}; remove_older_than no_model.pth new.yaml", cwd=tmp_path)
    assert res.returncode == 0 and (tmp_path / "new.yaml").exists()  # nothing to compare with


def test_generalist_noise_pools_banks_and_names_a_missing_one(recipe):
    """--generalist_noise: the generalists' training gets every listed bank (a YAML list of
    wav.scp paths); specialists keep the injection bank; an unknown bank stops with its name."""
    shutil.copytree(RECIPE / "conf" / "model", recipe / "conf" / "model")
    shutil.copytree(RECIPE / "conf" / "method", recipe / "conf" / "method")
    shutil.copy2(RECIPE / "conf" / "train_generalist.yaml", recipe / "conf")
    shutil.copy2(RECIPE / "conf" / "train_ssl.yaml", recipe / "conf")
    for bank in ("inject_train", "premix_train"):
        (recipe / "data" / "noise" / bank).mkdir(parents=True)
        (recipe / "data" / "noise" / bank / "wav.scp").write_text("n1 /x/n1.wav\n")
    body = ("setup; launch_train() { shift 2; printf '%s\\n' \"$@\" >> calls.txt; echo >> calls.txt; }; "
            "generalist_noise='inject_train premix_train'; "
            "train_pse exp/g generalist stft supervised dump/g/train dump/g/valid false; "
            "train_pse exp/s ssl stft pseudo_se dump/s/train dump/s/valid false")
    res = bash(f"source ./pse.sh\n{body}", cwd=recipe)
    assert res.returncode == 0, res.stderr
    generalist, specialist = (call.split("\n") for call in (recipe / "calls.txt").read_text().split("\n\n")[:2])
    noise = f"{recipe}/data/noise"
    assert f"inject_noise_scp=[{noise}/inject_train/wav.scp,{noise}/premix_train/wav.scp]" in generalist
    assert f"inject_noise_scp=[{noise}/inject_train/wav.scp]" in specialist
    assert "magnitude_exponent: 0.3" in (recipe / "exp/g/pse_config.yaml").read_text()
    res = bash(f"source ./pse.sh\n{body.replace('premix_train', 'premix_tran')}", cwd=recipe)
    assert res.returncode != 0 and "noise bank premix_tran: no data/noise/premix_tran/wav.scp" in res.stderr


def test_run_sh_gives_debian_real_the_pretrained_teacher_and_real_student_config_unless_told_otherwise(recipe):
    write_exec(recipe / "pse.sh", '#!/usr/bin/env bash\nprintf "%s\\n" "$@" > pse_args.txt\n')
    argv = {}
    for name, cmd in (("real", "./run.sh --corpus debian_real"), ("told", "./run.sh --corpus debian_real --spk_teacher ecapa"),
                      ("embedded", "./run.sh")):
        res = bash(cmd, cwd=recipe)
        assert res.returncode == 0, res.stderr
        argv[name] = (recipe / "pse_args.txt").read_text().split("\n")
    real_defaults = ["--spk_teacher", "resemblyzer", "--spk_student_config", "conf/tuning/train_spk_student_real.yaml"]
    assert argv["real"][2:6] == real_defaults
    assert argv["told"][2:8] == real_defaults + ["--spk_teacher", "ecapa"]  # the later one wins
    assert "--spk_teacher" not in argv["embedded"] and "--spk_student_config" not in argv["embedded"]


@pytest.mark.parametrize("settings, teacher, student_dim, separator_dim", [
    ("spk_teacher=ecapa", "--train_config {exp}/spk_teacher/config.yaml --model_file {exp}/spk_teacher/valid.eer.best.pth", "", ""),
    ("spk_teacher=resemblyzer", "--model_tag resemblyzer", "--student_conf embed_dim=256", "--separator_conf embed_dim=256"),
    ("spk_teacher=ecapa spk_teacher_tag=espnet/voxcelebs12_rawnet3", "--model_tag espnet/voxcelebs12_rawnet3", "", ""),
])
def test_teacher_choice_sets_the_teacher_and_the_embedding_size(recipe, settings, teacher, student_dim, separator_dim):
    res = bash(f"source ./pse.sh\n{settings}; spk_teacher_args; echo \"|$(spk_dim_args student_conf)|\"; "
               "echo \"|$(spk_dim_args separator_conf)|\"; pretrained_teacher", cwd=recipe)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == teacher.format(exp=f"{recipe}/exp")
    assert lines[1:3] == [f"|{student_dim}|", f"|{separator_dim}|"]
    assert lines[3:] == ([] if settings == "spk_teacher=ecapa" else [teacher.split()[-1]])


def test_packed_conditioned_models_name_a_pretrained_teacher_by_its_tag(recipe):
    res = bash("source ./pse.sh\nmkdir -p exp; spk_teacher=resemblyzer; spk_pack_extras; spk_teacher=ecapa; spk_pack_extras",
               cwd=recipe)
    assert res.returncode == 0, res.stderr
    pretrained, trained = res.stdout.splitlines()
    assert pretrained.split()[-1] == "spk_teacher_tag=exp/spk_teacher_tag.yaml"
    assert (recipe / "exp" / "spk_teacher_tag.yaml").read_text() == "model_tag: resemblyzer\n"
    assert "spk_teacher_model=exp/spk_teacher/valid.eer.best.pth" in trained and "tag" not in trained


def test_generalist_model_stands_in_for_the_trained_generalist(recipe):
    """--generalist_model: stage 4 installs the packed generalist (config + checkpoint) where
    it would have trained one, trains no plain generalist, skips it on rerun and redoes it
    for another zip; it stands for exactly one size."""
    shipped = REPO / "espnet2_pse" / "pretrained" / "generalist_stft.zip"
    python = REPO / "tools" / "venv" / "bin" / "python"
    body = (f"python={python}; generalist_model={shipped}; sizes=stft; spk_encoder=false; setup; "
            "launch_train() { echo \"$1\" >> trained.txt; }; stage_4_generalists")
    res = bash(f"source ./pse.sh\n{body}", cwd=recipe)
    assert res.returncode == 0, res.stderr
    model = recipe / "exp" / "generalist_stft" / "model"
    assert not (recipe / "trained.txt").exists()
    assert (model / ".done").read_text().strip() == f"packed {shipped}"
    with zipfile.ZipFile(shipped) as packed:
        packed_weights = yaml.safe_load(packed.read("meta.yaml"))["files"]["model_file"]
        assert (model / "valid.loss.best.pth").read_bytes() == packed.read(packed_weights)
        assert "separator: conv_tasnet_skip" in (model / "config.yaml").read_text()
    res = bash(f"source ./pse.sh\n{body}", cwd=recipe)
    assert res.returncode == 0 and "already installed from" in res.stderr
    (model / ".done").write_text("")  # trained here: replaced by the pack
    res = bash(f"source ./pse.sh\n{body}", cwd=recipe)
    assert res.returncode == 0 and (model / ".done").read_text().startswith("packed")
    two_sizes = body.replace("sizes=stft", "sizes='stft cpu'")
    res = bash(f"source ./pse.sh\n{two_sizes}", cwd=recipe)
    assert res.returncode != 0 and "--generalist_model stands for one size" in res.stderr
    res = bash(f"source ./pse.sh\n{body.replace(str(shipped), str(model / 'config.yaml'))}", cwd=recipe)
    assert res.returncode != 0 and "--generalist_model must be a packed model (.zip)" in res.stderr


def test_generalist_talkers_and_the_conditioned_schedule_reach_the_training(recipe):
    """--generalist_talkers P gives the generalists (plain and conditioned, not the specialists)
    the training voices as talkers, labelled by speaker so that no example gets its own voice;
    --conditioned_config is the conditioned ones' schedule; a dump without utt2spk_index stops
    with what to redo."""
    shutil.copytree(RECIPE / "conf" / "model", recipe / "conf" / "model")
    shutil.copytree(RECIPE / "conf" / "method", recipe / "conf" / "method")
    for role in ("generalist", "ssl"):
        shutil.copy2(RECIPE / "conf" / f"train_{role}.yaml", recipe / "conf")
    (recipe / "data" / "noise" / "inject_train").mkdir(parents=True)
    (recipe / "data" / "noise" / "inject_train" / "wav.scp").write_text("n1 /x/n1.wav\n")
    (recipe / "dump" / "g" / "train").mkdir(parents=True)
    (recipe / "dump" / "g" / "train" / "utt2spk_index").write_text("u1 0\n")
    body = ("generalist_talkers=0.5; conditioned_config=conf/tuning/train_conditioned_stft.yaml; "
            "setup; launch_train() { shift 2; printf '%s\\n' \"$@\" >> calls.txt; echo >> calls.txt; }; "
            "train_pse exp/g generalist stft supervised dump/g/train dump/g/valid false; "
            "train_pse exp/c conditioned conditioned/stft supervised dump/g/train dump/g/valid false; "
            "train_pse exp/s ssl stft pseudo_se dump/g/train dump/s/valid false")
    res = bash(f"source ./pse.sh\n{body}", cwd=recipe)
    assert res.returncode == 0, res.stderr
    plain, conditioned, specialist = (call.split("\n") for call in (recipe / "calls.txt").read_text().split("\n\n")[:3])
    for call in (plain, conditioned):
        assert f"talker_scp={recipe}/dump/g/train/spk1.scp" in call
        assert f"talker_utt2spk={recipe}/dump/g/train/utt2spk" in call and "talker_prob=0.5" in call
        assert "dump/g/train/utt2spk_index,spk_index,text_int" in call
    assert not any(arg.startswith("talker_") for arg in specialist)
    assert "max_epoch: 60" in (recipe / "exp/c/pse_config.yaml").read_text()  # the conditioned schedule
    assert "max_epoch: 6" in (recipe / "exp/g/pse_config.yaml").read_text()
    (recipe / "dump" / "g" / "train" / "utt2spk_index").unlink()
    res = bash(f"source ./pse.sh\n{body}", cwd=recipe)
    assert res.returncode != 0 and "dump/g/train/utt2spk_index is missing (written by stage 2)" in res.stderr
    res = bash(f"source ./pse.sh\n{body.replace('generalist_talkers=0.5', 'generalist_talkers=1.5')}", cwd=recipe)
    assert res.returncode != 0 and "--generalist_talkers must be a share between 0 and 1" in res.stderr
