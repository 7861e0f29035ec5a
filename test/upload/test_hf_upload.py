"""Upload round trip to a local bare repository, token hygiene, dry run and clear errors."""

import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from espnet2_pse.bin.hf_upload import HF_URL, TOKEN_VAR, Masker, UploadError, git_environment, main
from espnet2_pse.scoring.model_card import PackedModelError

TOKEN = "secret-test-token"
REPO = "someone/pse-tiny"
MODEL_DIR = "exp/enh_tiny"
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Test Author",
    "GIT_AUTHOR_EMAIL": "author@example.com",
    "GIT_COMMITTER_NAME": "Test Author",
    "GIT_COMMITTER_EMAIL": "author@example.com",
}


def git(*args, cwd=None):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def packed_model(tmp_path_factory):
    """A real ESPnet enhancement pack: config from a dry-run training, random weights of the
    model that config builds, packed with espnet2.bin.pack (paths relative to its cwd)."""
    from espnet2.bin.pack import main as pack_main
    from espnet2.tasks.enh import EnhancementTask

    root = tmp_path_factory.mktemp("pack")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        EnhancementTask.main(cmd=[
            "--dry_run", "true", "--output_dir", MODEL_DIR, "--use_tensorboard", "false",
            "--encoder_conf", "{n_fft: 128, hop_length: 64}", "--decoder_conf", "{n_fft: 128, hop_length: 64}",
            "--separator_conf", "{num_spk: 1, unit: 8, layer: 1}",
        ])
        model, _ = EnhancementTask.build_model_from_file(f"{MODEL_DIR}/config.yaml", None, "cpu")
        torch.save(model.state_dict(), f"{MODEL_DIR}/valid.loss.best.pth")
        pack_main(["enh", "--train_config", f"{MODEL_DIR}/config.yaml",
                   "--model_file", f"{MODEL_DIR}/valid.loss.best.pth", "--outpath", "packed.zip"])
    return root / "packed.zip"


@pytest.fixture
def results_md(tmp_path):
    Image.new("RGB", (8, 8), (200, 30, 30)).save(tmp_path / "sisdri_vs_params.png")
    path = tmp_path / "RESULTS.md"
    path.write_text("# Results\n\n## SI-SDRi (dB)\n\n| Method | Zero-shot |\n|---|---|\n"
                    "| pseudo_se | 7.10 ± 0.50 |\n\n"
                    "## eSTOI\n\n| Method | Zero-shot |\n|---|---|\n| pseudo_se | 0.812 ± 0.010 |\n\n"
                    "![SI-SDRi vs model parameters](sisdri_vs_params.png)\n")
    return path


@pytest.fixture
def bare_repo(tmp_path):
    bare = tmp_path / "remote.git"
    git("init", "--bare", "-q", str(bare))
    return bare


@pytest.fixture
def upload_env(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    for key, value in GIT_IDENTITY.items():
        monkeypatch.setenv(key, value)


def front_matter(readme: str) -> dict:
    assert readme.startswith("---\n")
    return yaml.safe_load(readme.split("---\n")[1])


def assert_no_token(root: Path):
    for path in root.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


@pytest.fixture
def uploaded(packed_model, results_md, bare_repo, tmp_path, upload_env, capfd, caplog):
    caplog.set_level("INFO")
    commit = main(["--packed_model", str(packed_model), "--hf_repo", REPO, "--remote_url", f"file://{bare_repo}",
                   "--results", str(results_md), "--datasets", "librispeech_asr,musan"])
    out, err = capfd.readouterr()
    clone = tmp_path / "clone"
    git("clone", "-q", f"file://{bare_repo}", str(clone))
    return {"commit": commit, "clone": clone, "bare": bare_repo, "output": out + err + caplog.text}


def test_round_trip_files_lfs_card_and_token(uploaded, packed_model):
    clone, bare = uploaded["clone"], uploaded["bare"]
    assert git("rev-parse", "HEAD", cwd=clone).strip() == uploaded["commit"]
    tracked = set(git("ls-files", cwd=clone).split())
    assert tracked == {".gitattributes", "README.md", "meta.yaml", "sisdri_vs_params.png",
                       f"{MODEL_DIR}/config.yaml", f"{MODEL_DIR}/valid.loss.best.pth"}
    # Weights and images go through LFS: pointers in git, real bytes in the working tree.
    assert "*.pth filter=lfs" in (clone / ".gitattributes").read_text()
    assert set(git("lfs", "ls-files", "--name-only", cwd=clone).split()) == {
        f"{MODEL_DIR}/valid.loss.best.pth", "sisdri_vs_params.png"}
    pointer = git("--git-dir", str(bare), "show", f"HEAD:{MODEL_DIR}/valid.loss.best.pth")
    assert pointer.startswith("version https://git-lfs.github.com/spec/v1")
    with zipfile.ZipFile(packed_model) as archive:
        weights = archive.read(f"{MODEL_DIR}/valid.loss.best.pth")
    assert (clone / MODEL_DIR / "valid.loss.best.pth").read_bytes() == weights

    readme = (clone / "README.md").read_text()
    meta = front_matter(readme)
    assert meta["library_name"] == "espnet" and meta["license"] == "cc-by-4.0"
    assert set(meta["tags"]) >= {"espnet", "audio", "speech-enhancement", "personalized-speech-enhancement",
                                 "audio-to-audio"}
    assert meta["datasets"] == ["librispeech_asr", "musan"] and meta["metrics"] == ["si_sdri", "estoi"]
    assert readme.index("pip install espnet2_pse") < readme.index("import espnet2_pse") < readme.index(
        f'SeparateSpeech.from_pretrained("{REPO}")')
    assert "| pseudo_se | 7.10 ± 0.50 |" in readme and "separator: rnn" in readme

    assert TOKEN not in uploaded["output"]
    assert_no_token(clone)
    assert_no_token(bare)
    assert TOKEN not in git("log", "--all", "-p", cwd=clone)


def test_cloned_repo_loads_and_enhances(uploaded, tmp_path):
    """The clone is a valid pack: re-zipped, ESPnet's own unpack + SeparateSpeech load it."""
    from espnet2.bin.enh_inference import SeparateSpeech
    from espnet2.main_funcs.pack_funcs import unpack

    clone = uploaded["clone"]
    rezip = tmp_path / "rezip.zip"
    with zipfile.ZipFile(rezip, "w") as archive:
        for name in git("ls-files", cwd=clone).split():
            archive.write(clone / name, name)
    separate = SeparateSpeech(**unpack(rezip, tmp_path / "unpacked"))
    noisy = np.random.default_rng(0).standard_normal((1, 8000)).astype(np.float32)
    enhanced = separate(noisy, fs=16000)
    assert len(enhanced) == 1 and enhanced[0].shape == (1, 8000) and np.all(np.isfinite(enhanced[0]))


def test_from_pretrained_on_the_hub_layout(uploaded, tmp_path, monkeypatch):
    """SeparateSpeech.from_pretrained("<repo>") through espnet_model_zoo's hub code path, with
    the snapshot download replaced by the pushed repository's clone."""
    downloader = pytest.importorskip("espnet_model_zoo.downloader")
    from espnet2.bin.enh_inference import SeparateSpeech

    snapshot = tmp_path / "snapshot"
    shutil.copytree(uploaded["clone"], snapshot, ignore=shutil.ignore_patterns(".git"))
    requested = []

    def fake_snapshot(self, name=None, **kwargs):
        requested.append(name)
        return str(snapshot)

    monkeypatch.setattr(downloader.ModelDownloader, "huggingface_download", fake_snapshot)
    separate = SeparateSpeech.from_pretrained(REPO)
    assert requested == [REPO]
    enhanced = separate(np.random.default_rng(1).standard_normal((1, 4000)).astype(np.float32), fs=16000)
    assert enhanced[0].shape == (1, 4000) and np.all(np.isfinite(enhanced[0]))


def test_dry_run_prints_files_and_card_and_pushes_nothing(packed_model, results_md, bare_repo, upload_env, capfd):
    assert main(["--packed_model", str(packed_model), "--hf_repo", REPO, "--remote_url", f"file://{bare_repo}",
                 "--results", str(results_md), "--dry_run"]) is None
    out, err = capfd.readouterr()
    assert f"{MODEL_DIR}/valid.loss.best.pth" in out and "sisdri_vs_params.png" in out
    assert "library_name: espnet" in out and "token: found in the HF_TOKEN environment variable" in out
    assert TOKEN not in out + err
    pushed = subprocess.run(["git", "--git-dir", str(bare_repo), "rev-parse", "HEAD"], capture_output=True)
    assert pushed.returncode != 0  # still an empty repository


def test_token_goes_only_to_huggingface_through_a_credential_helper(monkeypatch):
    monkeypatch.delenv("GIT_CONFIG_COUNT", raising=False)
    env = git_environment(TOKEN, f"{HF_URL}/{REPO}")
    assert [k for k, v in env.items() if TOKEN in v] == [TOKEN_VAR]  # not in any config value or URL

    def fill(host):
        return subprocess.run(["git", "credential", "fill"], input=f"protocol=https\nhost={host}\n\n",
                              env=env, capture_output=True, text=True, timeout=30)

    assert f"password={TOKEN}" in fill("huggingface.co").stdout
    other = fill("example.com")
    assert TOKEN not in other.stdout + other.stderr
    assert TOKEN_VAR not in git_environment(TOKEN, "file:///some/bare.git")
    assert Masker(TOKEN)(f"https://user:{TOKEN}@host/x and {TOKEN}") == "https://***@host/x and ***"


def write_zip(path, members):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_invalid_packs_are_rejected_with_the_reason(tmp_path, bare_repo):
    def upload(zip_path):
        main(["--packed_model", str(zip_path), "--hf_repo", REPO, "--remote_url", f"file://{bare_repo}"])

    (tmp_path / "junk.zip").write_text("not a zip")
    with pytest.raises(PackedModelError, match=r"junk\.zip: not a zip archive"):
        upload(tmp_path / "junk.zip")
    with pytest.raises(PackedModelError, match="no meta.yaml"):
        upload(write_zip(tmp_path / "nometa.zip", {"exp/config.yaml": "a: 1\n"}))
    meta = yaml.safe_dump({"files": {"model_file": "exp/model.pth"}, "yaml_files": {"train_config": "exp/config.yaml"}})
    with pytest.raises(PackedModelError, match="files.model_file names 'exp/model.pth', which is not in the archive"):
        upload(write_zip(tmp_path / "partial.zip", {"meta.yaml": meta, "exp/config.yaml": "a: 1\n"}))
    with pytest.raises(PackedModelError, match="packed model not found"):
        upload(tmp_path / "missing.zip")


def test_unreachable_repository_and_missing_git_lfs(packed_model, tmp_path, upload_env, monkeypatch):
    args = ["--packed_model", str(packed_model), "--hf_repo", REPO]
    with pytest.raises(UploadError, match=r"(?s)cannot clone file://.*nowhere\.git.*must exist"):
        main(args + ["--remote_url", f"file://{tmp_path}/nowhere.git"])
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    os.symlink(shutil.which("git"), bin_dir / "git")  # git without git-lfs on PATH
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(UploadError, match="git-lfs is not installed"):
        main(args + ["--remote_url", f"file://{tmp_path}/nowhere.git"])


def test_uploading_the_same_model_again_pushes_nothing(uploaded, packed_model, results_md):
    again = main(["--packed_model", str(packed_model), "--hf_repo", REPO, "--remote_url", f"file://{uploaded['bare']}",
                  "--results", str(results_md), "--datasets", "librispeech_asr,musan"])
    assert again is None
    assert git("--git-dir", str(uploaded["bare"]), "rev-parse", "HEAD").strip() == uploaded["commit"]
