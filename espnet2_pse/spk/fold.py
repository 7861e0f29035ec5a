"""One speaker folded into a speaker-conditioned separator: a plain model for that voice.

In ``pconv_tasnet`` the embedding e reaches each TCN block only through the block's first 1x1
convolution (W, b): FiLM feeds it x * (1 + gamma(e)) + beta(e), concatenation feeds it
[x; e], while the residual stream carries x itself. With e fixed, both are that convolution
with other weights:
- FiLM: W' = W diag(1 + gamma), b' = b + W beta;
- concatenation: W' = W[:, :C], b' = b + W[:, C:] e.
So the folded model is the plain ``conv_tasnet_skip`` network (the generalist's layout) and
computes what the conditioned one computes with e, up to float rounding. It needs no
enrollment at run time and goes wherever a plain model goes: ``personalize --base``, the fast
and ONNX paths, streaming when causal.
"""

import copy
import logging
from pathlib import Path
from typing import Callable, Dict, Iterable, Tuple

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from espnet2_pse.data.audio import load_audio
from espnet2_pse.inference.model_loading import ModelFiles, packed_teacher_tag

logger = logging.getLogger(__name__)

CONDITIONED_SEPARATOR, PLAIN_SEPARATOR = "pconv_tasnet", "conv_tasnet_skip"
# separator_conf keys of the conditioned separator that the plain one does not take.
_CONDITIONING_KEYS = ("embed_dim", "fusion", "speaker_encoder", "freeze_speaker_encoder")


def is_conditioned(config: Dict) -> bool:
    return config.get("separator") == CONDITIONED_SEPARATOR


def fold_embedding(config: Dict, state: Dict[str, torch.Tensor], embedding) -> Tuple[Dict, Dict]:
    """(plain config, plain state dict) of a ``pconv_tasnet`` model with ``embedding`` folded in.

    Args:
        config: the conditioned model's training config (config.yaml as a dict).
        state: its state dict.
        embedding: (D,) speaker embedding in the teacher's space; it is L2-normalised, as the
            separator does.
    Raises:
        ValueError: not a ``pconv_tasnet`` config, an internal speaker encoder (it embeds
            audio, not a given embedding), or an embedding of the wrong size.
    """
    if not is_conditioned(config):
        raise ValueError(f"only a '{CONDITIONED_SEPARATOR}' model can fold a speaker in, got '{config.get('separator')}'")
    conf = config.get("separator_conf") or {}
    if conf.get("speaker_encoder"):
        raise ValueError("this model embeds enrollment audio with its own speaker_encoder: folding needs a model "
                         "conditioned on a teacher's embeddings")
    e = F.normalize(torch.as_tensor(np.asarray(embedding, dtype=np.float32)).reshape(-1), dim=0)
    if e.numel() != conf.get("embed_dim", 192):
        raise ValueError(f"{e.numel()}-dim embedding, but the model expects {conf.get('embed_dim', 192)} dims")
    film = conf.get("fusion", "film") == "film"
    folded = {k: v.clone() for k, v in state.items() if not k.startswith("separator.film.")}
    index = 0
    while f"separator.blocks.{index}.in_conv.weight" in state:
        prefix = f"separator.blocks.{index}.in_conv."
        weight, bias = state[prefix + "weight"].double(), state[prefix + "bias"].double()  # (H, C_in, 1), (H,)
        if film:
            layer = f"separator.film.{index}."
            gamma, beta = (state[layer + "weight"].double() @ e.double() + state[layer + "bias"].double()).chunk(2)
            new_weight, new_bias = weight * (1 + gamma)[None, :, None], bias + weight[:, :, 0] @ beta
        else:
            channels = weight.size(1) - e.numel()
            new_weight, new_bias = weight[:, :channels], bias + weight[:, channels:, 0] @ e.double()
        folded[prefix + "weight"] = new_weight.to(state[prefix + "weight"].dtype)
        folded[prefix + "bias"] = new_bias.to(state[prefix + "bias"].dtype)
        index += 1
    plain = copy.deepcopy(config)
    plain["separator"] = PLAIN_SEPARATOR
    plain["separator_conf"] = {k: v for k, v in conf.items() if k not in _CONDITIONING_KEYS}
    # The training data lists of the conditioned run name its enrollment tables: not needed now.
    for key in ("train_data_path_and_name_and_type", "valid_data_path_and_name_and_type"):
        if isinstance(plain.get(key), list):
            plain[key] = [entry for entry in plain[key] if "enroll_ref" not in str(entry)]
    return plain, folded


def fold_model_files(files: ModelFiles, embedding, out_dir: Path) -> ModelFiles:
    """Write the folded model (config.yaml, model.pth) into ``out_dir``; return its files."""
    config = yaml.safe_load(Path(files.train_config).read_text(encoding="utf-8"))
    state = torch.load(files.model_file, map_location="cpu", weights_only=True)
    plain, folded = fold_embedding(config, state, embedding)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.yaml").write_text(yaml.safe_dump(plain, sort_keys=False), encoding="utf-8")
    torch.save(folded, out_dir / "model.pth")
    return ModelFiles(out_dir / "config.yaml", out_dir / "model.pth")


def centroid_embedding(paths: Iterable[Path], embed: Callable[[torch.Tensor], torch.Tensor],
                       sample_rate: int) -> Tuple[np.ndarray, float]:
    """Unit-norm mean of the unit embeddings of the audio files ``paths`` (any rate and channel
    count; read at ``sample_rate``, the teacher's), the speaker centroid as GE2E forms it, and the mean
    cosine of the files to it (how consistently they sound like one voice).

    Raises:
        ValueError: no file; AudioError (a ValueError naming the file): an unusable one.
    """
    embeddings = [embed(torch.from_numpy(load_audio(path, sample_rate))).numpy() for path in paths]
    if not embeddings:
        raise ValueError("no audio to embed the speaker from")
    centroid = np.mean(embeddings, axis=0)
    centroid = centroid / np.linalg.norm(centroid)
    return centroid.astype(np.float32), float(np.mean(np.stack(embeddings) @ centroid))


def fold_user_recordings(files: ModelFiles, recordings: Iterable[Path], out_dir: Path,
                         sample_rate: int) -> ModelFiles:
    """A speaker-conditioned model packed with its teacher (the recipe's packs) as a plain model
    for the voice of ``recordings``: the teacher's centroid of them folded in (written to
    ``out_dir/speaker_embedding.npy`` too; the log gives the recordings' mean cosine to it).

    Raises:
        ValueError: the pack holds no teacher (``spk_teacher_tag`` or ``spk_teacher_model``).
    """
    from espnet2_pse.scoring.files import atomic_write_text, files_fingerprint
    from espnet2_pse.spk.embedder import load_embedder

    extras = files.extras
    tag = packed_teacher_tag(extras)
    if not tag and "spk_teacher_model" not in extras:
        raise ValueError(f"{files.model_file}: a speaker-conditioned model needs the speaker teacher it was trained "
                         "with packed beside it (spk_teacher_tag or spk_teacher_config/spk_teacher_model) to embed "
                         "the recordings")
    # A rerun (personalize adding clean speech to a work dir) reuses the fold of the same model
    # and recordings instead of embedding them all again; source.yaml is written last.
    recordings = list(recordings)
    source = {"model": files_fingerprint(files.train_config, files.model_file, *extras.values(), content=True),
              "recordings": files_fingerprint(*recordings)}
    marker = out_dir / "source.yaml"
    if marker.is_file() and yaml.safe_load(marker.read_text(encoding="utf-8")) == source:
        logger.info("speaker-conditioned model %s: reusing its fold on the same recordings in %s",
                    files.model_file, out_dir)
        return ModelFiles(out_dir / "config.yaml", out_dir / "model.pth")
    marker.unlink(missing_ok=True)
    embed = load_embedder("teacher", extras.get("spk_teacher_config"), extras.get("spk_teacher_model"), tag)
    centroid, consistency = centroid_embedding(recordings, embed, sample_rate)
    folded = fold_model_files(files, centroid, out_dir)
    np.save(out_dir / "speaker_embedding.npy", centroid)
    atomic_write_text(marker, yaml.safe_dump(source))
    logger.info("speaker-conditioned model %s conditioned on the recordings' speaker centroid (their mean cosine "
                "to it: %.2f) and folded into the plain model %s", files.model_file, consistency, folded.model_file)
    return folded
