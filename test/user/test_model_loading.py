"""Model references of the user commands: zips, dirs, checkpoints, hub ids, and their errors."""

import shutil

import pytest
import torch

from espnet2_pse.inference.model_loading import ModelNotFoundError, load_separate_speech, resolve_model


def pack(model_dir, outpath):
    from espnet2.bin import pack as espnet_pack

    espnet_pack.main(["enh", "--train_config", str(model_dir / "config.yaml"),
                      "--model_file", str(model_dir / "model.pth"), "--outpath", str(outpath)])


def first_weight(separate_speech) -> torch.Tensor:
    return next(iter(separate_speech.enh_model.state_dict().values())).clone()


def test_a_zip_rewritten_in_place_is_loaded_anew(local_model, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(local_model, model_dir)
    pack(model_dir, tmp_path / "me.zip")
    before = first_weight(load_separate_speech(tmp_path / "me.zip"))
    state = torch.load(model_dir / "model.pth")
    torch.save({k: v * 2 if v.is_floating_point() else v for k, v in state.items()}, model_dir / "model.pth")
    pack(model_dir, tmp_path / "me.zip")  # same path, new weights (a new personalization)
    after = first_weight(load_separate_speech(tmp_path / "me.zip"))
    torch.testing.assert_close(after, 2 * before)


def test_directory_references(local_model, tmp_path):
    exp = tmp_path / "exp"
    exp.mkdir()
    with pytest.raises(ModelNotFoundError, match="needs config.yaml"):
        resolve_model(exp, tmp_path)
    shutil.copy(local_model / "config.yaml", exp / "config.yaml")
    with pytest.raises(ModelNotFoundError, match="no model file"):
        resolve_model(exp, tmp_path)
    for name in ("1epoch.pth", "2epoch.pth", "checkpoint.pth"):
        shutil.copy(local_model / "model.pth", exp / name)
    with pytest.raises(ModelNotFoundError, match="several model files.*1epoch.pth, 2epoch.pth"):
        resolve_model(exp, tmp_path)
    (exp / "valid.loss.best.pth").symlink_to(exp / "2epoch.pth")
    assert resolve_model(exp, tmp_path).model_file == exp / "valid.loss.best.pth"
    assert resolve_model(exp / "1epoch.pth", tmp_path).train_config == exp / "config.yaml"


def test_unusable_references_name_the_problem(tmp_path):
    with pytest.raises(ModelNotFoundError, match="not a Hugging Face id"):
        resolve_model(tmp_path / "missing.zip", tmp_path)
    (tmp_path / "broken.zip").write_bytes(b"PK not really")
    with pytest.raises(ModelNotFoundError, match="broken.zip: not a readable packed model"):
        resolve_model(tmp_path / "broken.zip", tmp_path / "unpacked")
    (tmp_path / "model.onnx").write_bytes(b"")
    with pytest.raises(ModelNotFoundError, match="expected a .zip, a .pth or a directory"):
        resolve_model(tmp_path / "model.onnx", tmp_path)


def test_pack_models_relative_to_writes_no_machine_paths(local_model, tmp_path):
    """Stage 8's packer with --relative_to: configs in the zip name paths relative to the
    recipe, and the zip still loads."""
    import zipfile

    import yaml

    from espnet2_pse.bin.pack_models import main as pack_models

    recipe = tmp_path / "recipe"
    model_dir = recipe / "exp" / "generalist" / "model"
    shutil.copytree(local_model, model_dir)
    config = yaml.safe_load((model_dir / "config.yaml").read_text())
    config["ssl_objective_conf"] = {"inject_noise_scp": [str(recipe / "data/noise/inject_train/wav.scp")]}
    (model_dir / "config.yaml").write_text(yaml.safe_dump(config))
    (recipe / "RESULTS.md").write_text("# Results\n")
    (tmp_path / "models.txt").write_text(f"{model_dir}/config.yaml {model_dir}/model.pth {tmp_path}/g.zip\n")
    pack_models(["--list", str(tmp_path / "models.txt"), "--relative_to", str(recipe),
                 "--option", str(recipe / "RESULTS.md")])
    with zipfile.ZipFile(tmp_path / "g.zip") as z:
        names = set(z.namelist())
        meta = yaml.safe_load(z.read("meta.yaml"))
        packed = yaml.safe_load(z.read("exp/generalist/model/config.yaml"))
    assert names == {"meta.yaml", "RESULTS.md", "exp/generalist/model/config.yaml", "exp/generalist/model/model.pth"}
    assert meta["files"]["model_file"] == "exp/generalist/model/model.pth"
    assert packed["ssl_objective_conf"]["inject_noise_scp"] == ["data/noise/inject_train/wav.scp"]
    assert str(tmp_path) not in yaml.safe_dump(packed)
    assert torch.equal(first_weight(load_separate_speech(tmp_path / "g.zip")),
                       first_weight(load_separate_speech(local_model)))
    # The recipe's zip exports to ONNX (pse-export checks parity with the PyTorch model).
    from espnet2_pse.bin.export import main as export

    assert export(["--model", str(tmp_path / "g.zip"), "--out", str(tmp_path / "g.onnx")]) == 0
