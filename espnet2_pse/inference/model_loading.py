"""Find the (train config, model file) pair behind a model reference and build the model.

A model reference is one of:
- a packed zip (``espnet2.bin.pack enh`` output: what ``personalize`` and the recipe write);
- a directory: an unpacked pack (it has ``meta.yaml``), or an experiment dir holding
  ``config.yaml`` and its checkpoints (``valid.loss.best.pth`` preferred);
- a ``.pth`` file next to the ``config.yaml`` it was trained with;
- a Hugging Face repository id (``owner/name`` or ``owner/name@revision``), fetched through
  espnet_model_zoo's ``ModelDownloader`` exactly as ``SeparateSpeech.from_pretrained`` does.
Local zips are unpacked into a fresh temporary dir per load, never into a cache keyed by the
zip's path, so a zip rewritten in place (a new personalization) is never served stale.
"""

import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Union

import yaml

import espnet2_pse  # noqa: F401  (registers the separators a packed model may name)

# owner/name with an optional @revision, as the Hugging Face hub spells repository ids.
_HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")
# Checkpoints in order of preference; ``checkpoint.pth`` is the trainer state, not a model.
_PREFERRED = ("valid.loss.best.pth", "valid.loss.ave.pth")
_NOT_MODELS = ("checkpoint.pth",)


class ModelNotFoundError(FileNotFoundError):
    """The reference names no usable model; the message says what was looked for."""


# Keys of a pack that are the model itself; any other packed file is an extra.
_MODEL_KEYS = ("train_config", "model_file")


@dataclass
class ModelFiles:
    """Paths ESPnet's ``build_model_from_file`` needs, and the pack's other files.

    ``extras`` maps the other keys of a pack's meta.yaml to their unpacked paths, e.g. the
    speaker teacher and student that a speaker-conditioned model was packed with
    (``spk_teacher_config``, ``spk_teacher_model``, ``spk_student_config``,
    ``spk_student_model``).
    """

    train_config: Path
    model_file: Path
    extras: Dict[str, Path] = field(default_factory=dict)


def packed_teacher_tag(extras: Mapping[str, Path]) -> Optional[str]:
    """The pretrained speaker teacher a pack names (``spk_teacher_tag``: a YAML file with
    ``model_tag``), or None."""
    if "spk_teacher_tag" not in extras:
        return None
    return str(yaml.safe_load(Path(extras["spk_teacher_tag"]).read_text(encoding="utf-8"))["model_tag"])


def _extras(unpacked: Mapping[str, Union[str, Path]], root: Optional[Path] = None) -> Dict[str, Path]:
    return {k: (root / v if root else Path(v)) for k, v in unpacked.items() if k not in _MODEL_KEYS}


def _from_meta(folder: Path) -> ModelFiles:
    """An unpacked pack: meta.yaml maps ``train_config``/``model_file`` to relative paths."""
    meta = yaml.safe_load((folder / "meta.yaml").read_text(encoding="utf-8")) or {}
    try:
        config = folder / meta["yaml_files"]["train_config"]
        model_file = folder / meta["files"]["model_file"]
        extras = _extras({**meta["yaml_files"], **meta["files"]}, folder)
    except (KeyError, TypeError):
        raise ModelNotFoundError(
            f"{folder / 'meta.yaml'}: not an enhancement pack (needs yaml_files.train_config and "
            "files.model_file)"
        ) from None
    return _checked(ModelFiles(config, model_file, extras), str(folder))


def _pick_checkpoint(folder: Path) -> Path:
    for name in _PREFERRED:
        if (folder / name).exists():
            return folder / name
    candidates: List[Path] = sorted(
        p for p in folder.glob("*.pth") if p.name not in _NOT_MODELS
    )
    best = [p for p in candidates if p.name.startswith("valid.") and p.name.endswith(".best.pth")]
    if len(best) == 1:
        return best[0]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise ModelNotFoundError(f"{folder}: no model file (*.pth other than checkpoint.pth)")
    raise ModelNotFoundError(
        f"{folder}: several model files ({', '.join(p.name for p in candidates)}); "
        "name one of them as the model"
    )


def _checked(files: ModelFiles, reference: str) -> ModelFiles:
    for path in (files.train_config, files.model_file):
        if not path.is_file():
            raise ModelNotFoundError(f"model {reference}: {path} does not exist")
    return files


def resolve_model(
    reference: Union[str, Path], unpack_dir: Path, cache_dir: Optional[str] = None
) -> ModelFiles:
    """Model files for ``reference`` (see the module docstring).

    Args:
        reference: zip, directory, .pth file or Hugging Face id.
        unpack_dir: empty dir to unpack a local zip into (it must outlive the model build).
        cache_dir: espnet_model_zoo cache for hub downloads (its default when None).
    """
    path = Path(reference).expanduser()
    if path.is_file() and path.suffix == ".zip":
        from espnet2.main_funcs.pack_funcs import unpack

        try:
            unpacked = unpack(path, unpack_dir, use_cache=False)
        except Exception as err:  # zipfile, yaml and ESPnet's own format errors
            raise ModelNotFoundError(f"model {path}: not a readable packed model ({err})") from None
        if "train_config" not in unpacked or "model_file" not in unpacked:
            raise ModelNotFoundError(f"model {path}: the pack has no train_config/model_file (not enh)")
        files = ModelFiles(Path(unpacked["train_config"]), Path(unpacked["model_file"]), _extras(unpacked))
        return _checked(files, str(path))
    if path.is_file() and path.suffix == ".pth":
        return _checked(ModelFiles(path.parent / "config.yaml", path), str(path))
    if path.is_dir():
        if (path / "meta.yaml").is_file():
            return _from_meta(path)
        if not (path / "config.yaml").is_file():
            raise ModelNotFoundError(f"model {path}: a model dir needs config.yaml (or meta.yaml)")
        return _checked(ModelFiles(path / "config.yaml", _pick_checkpoint(path)), str(path))
    if path.exists():
        raise ModelNotFoundError(f"model {path}: expected a .zip, a .pth or a directory")
    if not _HF_ID.match(str(reference)):
        raise ModelNotFoundError(
            f"model {reference}: no such file or directory, and not a Hugging Face id (owner/name)"
        )
    from espnet_model_zoo.downloader import ModelDownloader

    downloaded = ModelDownloader(cache_dir).download_and_unpack(str(reference))
    files = ModelFiles(Path(downloaded["train_config"]), Path(downloaded["model_file"]), _extras(downloaded))
    return _checked(files, str(reference))


def build_separate_speech(files: ModelFiles, device: str = "cpu"):
    """ESPnet's ``SeparateSpeech`` (eval mode, on ``device``) for resolved model files."""
    from espnet2.bin.enh_inference import SeparateSpeech

    return SeparateSpeech(train_config=str(files.train_config), model_file=str(files.model_file), device=device)


def load_separate_speech(
    reference: Union[str, Path], device: str = "cpu", cache_dir: Optional[str] = None
):
    """ESPnet's ``SeparateSpeech`` (eval mode, on ``device``) for a model reference."""
    with tempfile.TemporaryDirectory(prefix="pse_model_") as tmp:
        return build_separate_speech(resolve_model(reference, Path(tmp), cache_dir), device)
