"""The real recipe, stages 1-8, on a tiny embedded corpus with a tiny training schedule.

Everything runs for real (data synthesis, ESPnet training through espnet2.bin.launch and
run.pl, inference, scoring, RESULTS.md, packing); only the sizes are shrunk, through the
recipe's own options, so that the whole run fits in a CI budget.
"""

import shutil
import zipfile

import yaml

from .shell import RECIPE, REPO, bash

TINY_DATA = ("--num_speakers 5 --num_target 1 --num_validation 2 --minutes_per_speaker 0.5 "
             "--noise_files_per_family 1 --split_scale 0.15 --test_mixtures 3 --val_mixtures 6 --interferer_test true")
TINY_SCHEDULE = {
    "iterator_type": "chunk", "chunk_length": 8000, "batch_type": "unsorted", "batch_size": 4,
    "num_iters_per_epoch": 2, "max_epoch": 1, "optim": "adam", "optim_conf": {"lr": 1.0e-3},
    "best_model_criterion": [["valid", "loss", "min"]], "num_workers": 0,
    "use_tensorboard": False, "use_matplotlib": False,
}


def copy_recipe(tmp_path):
    dst = tmp_path / "egs2" / "pse_ssl" / "pse1"
    shutil.copytree(RECIPE, dst, ignore=shutil.ignore_patterns("data", "dump", "exp"))
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "venv").symlink_to(REPO / "tools" / "venv")
    tiny = dst / "conf" / "tiny"
    tiny.mkdir()
    for role in ("generalist", "ssl", "fsl"):
        (tiny / f"train_{role}.yaml").write_text(yaml.safe_dump(TINY_SCHEDULE))
    predictor = {k: v for k, v in TINY_SCHEDULE.items() if k not in ("iterator_type", "chunk_length")}
    predictor["predictor_conf"] = {"hidden_size": 8, "num_layers": 1}
    (tiny / "train_snr_predictor.yaml").write_text(yaml.safe_dump(predictor))
    # Speaker encoders: a tiny ECAPA teacher and the student, one short epoch each.
    short = {"batch_type": "unsorted", "batch_size": 4, "valid_batch_size": 4, "num_iters_per_epoch": 2,
             "max_epoch": 1, "num_workers": 0, "use_tensorboard": False, "use_matplotlib": False}
    teacher = yaml.safe_load((dst / "conf" / "tuning" / "train_spk_teacher.yaml").read_text())
    teacher.update(short, encoder_conf={"model_scale": 4, "ndim": 32, "output_size": 48})
    (tiny / "train_spk_teacher.yaml").write_text(yaml.safe_dump(teacher))
    student = yaml.safe_load((dst / "conf" / "tuning" / "train_spk_student.yaml").read_text())
    student.update(short, teacher_crop_s=1.5)
    (tiny / "train_spk_student.yaml").write_text(yaml.safe_dump(student))
    return dst


def test_stages_1_to_8_then_rescore_and_rerun(tmp_path):
    recipe = copy_recipe(tmp_path)
    opts = (f"--local_data_opts '{TINY_DATA}' --train_conf_dir conf/tiny --methods pseudo_se "
            "--fsl_durations 2 --spk_teacher_config conf/tiny/train_spk_teacher.yaml "
            "--spk_student_config conf/tiny/train_spk_student.yaml --enroll_seconds 2 "
            "--score_metrics si_sdr,snr,pesq,estoi,spk_sim,pdnsmos")
    res = bash(f"./run.sh {opts}", cwd=recipe, timeout=900)
    assert res.returncode == 0, res.stderr[-4000:]
    exp = recipe / "exp"
    speaker = yaml.safe_load((recipe / "data" / "roles.yaml").read_text())["target"][0]

    results = (exp / "RESULTS.md").read_text()
    for row in ("unprocessed", "generalist", "pseudo_se"):
        assert f"| {row} |" in results, results[:2000]
    assert "Few-shot 2 s" in results and (exp / "sisdri_vs_clean_seconds.png").stat().st_size > 0
    summary = yaml.safe_load((exp / "pseudo_se_cpu" / "zsl" / speaker / "score" / "summary.yaml").read_text())
    assert summary["num_utterances"] == 3 and "si_sdri" in summary["metrics"]
    # The unprocessed row scores the mixture against itself: exactly no improvement.
    unprocessed = yaml.safe_load((exp / "unprocessed" / speaker / "score" / "summary.yaml").read_text())
    assert unprocessed["metrics"]["si_sdri"]["mean"] == 0.0
    # The interfering-talker test set is scored by the same models, with the DNS track's metrics.
    summary = yaml.safe_load((exp / "interferer" / "pseudo_se_cpu" / "zsl" / speaker / "score" / "summary.yaml")
                             .read_text())
    assert summary["ref_scp"].endswith(f"speakers/{speaker}/test_interferer/spk1.scp")
    assert 1.0 <= summary["metrics"]["pdnsmos_ovrl"]["mean"] <= 5.0 and -1 <= summary["metrics"]["spk_sim"]["mean"] <= 1
    interferer = results[results.index("## Interfering talker"):]
    assert "### Personalized DNSMOS OVRL" in interferer and "| pseudo_se |" in interferer

    # Speaker encoders: EERs of teacher and student, cost, and the conditioned generalist
    # scored with each enrollment condition, static and refined.
    for name in ("teacher_clean", "teacher_noisy", "student_noisy", "student_2.0s_clean"):
        assert 0.0 <= yaml.safe_load((exp / "spk_eval" / f"{name}.yaml").read_text())["eer"] <= 1.0
    assert "## Speaker verification (EER)" in results and "## Speaker encoder cost" in results
    # The teacher trains through our wrapper: ESPnet's import stays quiet (no NLTK download).
    assert "nltk_data" not in (exp / "spk_teacher" / "train.log").read_text()
    for enroll in ("clean", "short", "noisy"):
        for mode in ("static", "hoploop", "refined", "refined_input"):
            summary = exp / "conditioned_cpu" / "enroll" / f"{enroll}_{mode}" / speaker / "score" / "summary.yaml"
            assert yaml.safe_load(summary.read_text())["num_utterances"] == 3
        refined = exp / "conditioned_cpu" / "enroll" / f"{enroll}_refined" / speaker / "enhanced" / "refinement.yaml"
        assert yaml.safe_load(refined.read_text())["overall"]["updates"] > 0
        assert f"| cpu | {enroll} |" in results

    packed = sorted(p.name for p in (exp / "packed").glob("*.zip"))
    assert packed == sorted([
        "conditioned_cpu.zip",
        "generalist_cpu.zip", f"generalist_cpu-fsl_2s-{speaker}.zip",
        f"pseudo_se_cpu-zsl-{speaker}.zip", f"pseudo_se_cpu-fsl_2s-{speaker}.zip",
    ])
    with zipfile.ZipFile(exp / "packed" / f"pseudo_se_cpu-zsl-{speaker}.zip") as z:
        names = z.namelist()
    assert "meta.yaml" in names and any(n.endswith(".pth") for n in names)
    with zipfile.ZipFile(exp / "packed" / "conditioned_cpu.zip") as z:
        meta = yaml.safe_load(z.read("meta.yaml"))
    # The conditioned model travels with the teacher and student of its embedding space.
    assert set(meta["files"]) == {"model_file", "spk_student_model", "spk_teacher_model"}
    assert set(meta["yaml_files"]) == {"train_config", "spk_student_config", "spk_teacher_config"}
    assert "Hugging Face upload skipped" in res.stderr
    # No DP method selected: stage 3 trains no SNR predictor.
    assert "the SNR predictor is not needed" in res.stderr and not (exp / "snr_predictor").exists()

    # Rescoring alone works (stage 7 on its own), and a full rerun trains nothing again.
    shutil.rmtree(exp / "pseudo_se_cpu" / "zsl" / speaker / "score")
    res = bash(f"./run.sh {opts} --stage 7 --stop_stage 7", cwd=recipe, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (exp / "pseudo_se_cpu" / "zsl" / speaker / "score" / "summary.yaml").is_file()
    res = bash(f"./run.sh {opts} --stop_stage 6", cwd=recipe, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Stage 1/8 (data preparation): skipped, already done" in res.stderr
    assert "training" not in res.stderr.replace("already trained", "")
