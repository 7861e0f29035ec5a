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
