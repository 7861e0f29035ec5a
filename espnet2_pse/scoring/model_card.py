"""Packed-model checks and the Hugging Face model card of an espnet2_pse model.

A packed model is the zip written by ``python -m espnet2.bin.pack enh``: ``meta.yaml`` (with
``files`` and ``yaml_files`` mappings to member names), the training ``config.yaml`` and the
``.pth`` weights, plus any ``--option`` files.
"""

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Dict, List, Optional, Sequence

import yaml

from espnet2_pse.scoring.results import METRIC_TITLES

TAGS = ("espnet", "audio", "speech-enhancement", "personalized-speech-enhancement", "audio-to-audio")
DEFAULT_LICENSE = "cc-by-4.0"


class PackedModelError(ValueError):
    """The packed model is not a usable ESPnet pack."""


@dataclass(frozen=True)
class PackedModel:
    path: Path
    members: List[str]  # file names inside the zip, in archive order
    meta: Dict
    config_name: str  # member name of the training config
    config_text: str


def read_packed_model(path: Path) -> PackedModel:
    """Open and check an ESPnet packed zip.

    Raises:
        PackedModelError: missing file, not a zip, no meta.yaml, meta.yaml naming members that
            are not in the archive, or member names that would escape the unpack directory.
    """
    path = Path(path)
    if not path.is_file():
        raise PackedModelError(f"packed model not found: {path}")
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise PackedModelError(f"{path}: not a zip archive (expected the output of espnet2.bin.pack)") from None
    with archive:
        members = [i.filename for i in archive.infolist() if not i.is_dir()]
        for name in members:
            parts = PurePosixPath(name).parts
            if name.startswith("/") or ".." in parts:
                raise PackedModelError(f"{path}: unsafe member name '{name}'")
        if "meta.yaml" not in members:
            raise PackedModelError(f"{path}: no meta.yaml at the top level: not an espnet2.bin.pack archive")
        try:
            meta = yaml.safe_load(archive.read("meta.yaml"))
        except yaml.YAMLError as err:
            raise PackedModelError(f"{path}: meta.yaml is not valid YAML: {err}") from None
        if not isinstance(meta, dict) or not all(isinstance(meta.get(k), dict) for k in ("files", "yaml_files")):
            raise PackedModelError(f"{path}: meta.yaml needs 'files' and 'yaml_files' mappings")
        for kind in ("yaml_files", "files"):
            for key, name in meta[kind].items():
                if name not in members:
                    raise PackedModelError(
                        f"{path}: meta.yaml {kind}.{key} names '{name}', which is not in the archive"
                    )
        if not meta["yaml_files"] or not meta["files"]:
            raise PackedModelError(f"{path}: meta.yaml lists no config or no model file")
        config_name = next(iter(meta["yaml_files"].values()))
        config_text = archive.read(config_name).decode("utf-8")
    return PackedModel(path, members, meta, config_name, config_text)


def results_metrics(results_md: str) -> List[str]:
    """Metric ids (summary column names) whose section a RESULTS.md contains."""
    headings = set(re.findall(r"^## (.+?)\s*$", results_md, flags=re.MULTILINE))
    return [col for col, title in METRIC_TITLES.items() if title in headings]


def _front_matter(license_: str, datasets: Sequence[str], metrics: Sequence[str]) -> str:
    meta = {
        "library_name": "espnet",
        "pipeline_tag": "audio-to-audio",
        "tags": list(TAGS),
        "license": license_,
    }
    if datasets:
        meta["datasets"] = list(datasets)
    if metrics:
        meta["metrics"] = list(metrics)
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n"


def render_model_card(
    packed: PackedModel,
    hf_repo: str,
    results_md: Optional[str] = None,
    license_: str = DEFAULT_LICENSE,
    datasets: Sequence[str] = (),
    plugin_version: str = "",
) -> str:
    """The README.md of the hub repository: YAML front matter, usage, results, config."""
    meta = packed.meta
    weights = ", ".join(f"`{name}`" for name in meta["files"].values())
    versions = ", ".join(f"{k} {str(meta[k]).split()[0]}" for k in ("espnet", "torch", "python") if k in meta)
    results = ""
    if results_md:
        # Under this card's own "Results" section: drop the file's title, shift headings down.
        body = re.sub(r"\A# [^\n]*\n", "", results_md.strip() + "\n")
        results = re.sub(r"^(#+) ", r"#\1 ", body.strip(), flags=re.MULTILINE)
    parts = [
        _front_matter(license_, datasets, results_metrics(results_md) if results_md else []),
        f"# {hf_repo.split('/')[-1]}",
        "",
        "A personalized speech enhancement model trained with espnet2_pse, a plugin of ESPnet2 for "
        "speaker-specialist enhancement (self-supervised and few-shot personalization). Input and output: "
        "16 kHz mono speech.",
        "",
        "## Usage",
        "",
        "The model is built from classes of the espnet2_pse plugin, which ESPnet only knows once the "
        "plugin is imported: run `pip install espnet2_pse`, then `import espnet2_pse` before calling "
        "`SeparateSpeech.from_pretrained`:",
        "",
        "```bash",
        "pip install espnet2_pse espnet_model_zoo",
        "```",
        "",
        "```python",
        "import soundfile",
        "import espnet2_pse  # registers the plugin's classes in ESPnet: needed before loading",
        "from espnet2.bin.enh_inference import SeparateSpeech",
        "",
        f'enhance = SeparateSpeech.from_pretrained("{hf_repo}")',
        'noisy, fs = soundfile.read("noisy.wav")  # 16 kHz mono',
        "enhanced = enhance(noisy[None, :], fs=fs)[0][0]  # first (only) output stream, first batch item",
        'soundfile.write("enhanced.wav", enhanced, fs)',
        "```",
        "",
        "## Files",
        "",
        f"- training config: `{packed.config_name}`",
        f"- weights: {weights}",
        f"- packed with {versions}" + (f"; espnet2_pse {plugin_version}" if plugin_version else ""),
    ]
    if results:
        parts += ["", "## Results", "", results]
    parts += [
        "",
        "## Training configuration",
        "",
        "<details><summary>config.yaml</summary>",
        "",
        "```yaml",
        packed.config_text.rstrip(),
        "```",
        "",
        "</details>",
    ]
    return "\n".join(parts) + "\n"
