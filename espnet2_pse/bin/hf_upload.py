"""Upload a packed espnet2_pse model to a Hugging Face hub repository (git + git-lfs).

Usage:
    python -m espnet2_pse.bin.hf_upload --packed_model exp/pack/model.zip --hf_repo user/name \
        [--remote_url URL] [--results exp/RESULTS.md] [--dry_run]

Steps: check the zip (an ``espnet2.bin.pack`` archive), clone ``https://huggingface.co/<repo>``
(or ``--remote_url``, any git URL, e.g. ``file:///path/to/bare.git``), track ``*.pth *.zip
*.bin *.png`` with git-lfs, unpack the zip at the repository root (the layout
``SeparateSpeech.from_pretrained("<repo>")`` expects), write the model card ``README.md``
(plus the plots RESULTS.md links to), commit and push. The hub repository must exist.

Token: ``HF_TOKEN`` or the token stored by ``hf auth login`` (``huggingface_hub.get_token()``).
It is handed to git only through a credential helper scoped to https://huggingface.co that
reads it from the git process environment: it never appears in a URL, a command line, a log,
the card or the repository, and it is not offered to any other host.

``--dry_run`` checks the zip and prints the files that would be pushed and the card; it clones
and pushes nothing.
"""

import argparse
import fnmatch
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Dict, List, Optional, Sequence, Tuple

import espnet2_pse
from espnet2_pse.bin.model_card import add_card_arguments, card_for
from espnet2_pse.scoring.model_card import PackedModelError, read_packed_model

logger = logging.getLogger("espnet2_pse.bin.hf_upload")

HF_URL = "https://huggingface.co"
LFS_PATTERNS = ("*.pth", "*.zip", "*.bin", "*.png")
# Environment variable that carries the token from this process to the credential helper.
TOKEN_VAR = "ESPNET2_PSE_HF_GIT_TOKEN"
_FALLBACK_IDENTITY = ("-c", "user.name=espnet2_pse", "-c", "user.email=espnet2_pse@users.noreply.huggingface.co")


class UploadError(RuntimeError):
    """The upload cannot proceed; the message says why and what to do."""


def find_token() -> Tuple[Optional[str], str]:
    """(token or None, where it came from)."""
    token = os.environ.get("HF_TOKEN")
    if token:
        return token, "the HF_TOKEN environment variable"
    try:
        from huggingface_hub import get_token

        token = get_token()
    except Exception as err:  # a broken login file must not stop a local upload
        logger.warning("could not read the stored Hugging Face token: %s", type(err).__name__)
        token = None
    return (token, "the huggingface_hub login") if token else (None, "nowhere")


class Masker:
    """Hides secrets (the token, passwords in URLs) in text that is logged or raised."""

    def __init__(self, token: Optional[str]):
        self.token = token

    def __call__(self, text: str) -> str:
        if self.token:
            text = text.replace(self.token, "***")
        return re.sub(r"(://)[^/@\s]+@", r"\1***@", text)


def git_environment(token: Optional[str], remote_url: str) -> Dict[str, str]:
    """Environment for every git call: no prompts, no LFS downloads on clone and, for hub
    remotes with a token, a credential helper for https://huggingface.co only."""
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0", GIT_LFS_SKIP_SMUDGE="1")
    if token and remote_url.startswith(HF_URL + "/"):
        helper = (
            '!f() { test "$1" = get || return 0; echo username=hf_user; '
            f'echo "password=${{{TOKEN_VAR}}}"; }}; f'
        )
        # Config through the environment (git >= 2.31) reaches the git-lfs and credential
        # subprocesses too. The empty value first drops other helpers for this host, so a stale
        # stored credential cannot win over the token.
        count = int(env.get("GIT_CONFIG_COUNT", "0"))
        for i, value in enumerate(("", helper)):
            env[f"GIT_CONFIG_KEY_{count + i}"] = f"credential.{HF_URL}.helper"
            env[f"GIT_CONFIG_VALUE_{count + i}"] = value
        env["GIT_CONFIG_COUNT"] = str(count + 2)
        env[TOKEN_VAR] = token
    return env


def run_git(
    args: Sequence[str], cwd: Optional[Path], env: Dict[str, str], mask: Masker, check: bool = True
) -> subprocess.CompletedProcess:
    """Run ``git args``; log the (masked) command; raise UploadError with masked output on failure."""
    shown = mask(" ".join(["git", *args]))
    logger.info("$ %s", shown)
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        output = mask(proc.stderr.strip() or proc.stdout.strip())
        raise UploadError(f"`{shown}` failed (exit {proc.returncode}): {output}")
    return proc


def check_git_lfs(env: Dict[str, str], mask: Masker) -> None:
    if shutil.which("git", path=env.get("PATH")) is None:
        raise UploadError("git is not installed: install git and git-lfs to upload")
    if run_git(["lfs", "version"], None, env, mask, check=False).returncode != 0:
        raise UploadError(
            "git-lfs is not installed (the hub keeps model weights in LFS): install it "
            "(e.g. `apt-get install git-lfs`, see https://git-lfs.com) and rerun"
        )


def linked_files(results: Optional[Path]) -> List[str]:
    """Relative paths of the images a RESULTS.md links to that exist beside it."""
    if results is None:
        return []
    names = re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", results.read_text(encoding="utf-8"))
    return [
        n for n in dict.fromkeys(names)
        if ".." not in PurePosixPath(n).parts and not n.startswith("/") and (results.parent / n).is_file()
    ]


def planned_files(members: Sequence[str], extra: Sequence[str]) -> List[str]:
    return sorted(set(members) | set(extra) | {"README.md", ".gitattributes"})


def push_to_hub(args: argparse.Namespace) -> Optional[str]:
    """Do the upload described by parsed ``args``; return the pushed commit id (None when the
    dry run or an up-to-date repository means nothing was pushed)."""
    packed = read_packed_model(args.packed_model)
    card = card_for(args)
    images = linked_files(args.results)
    remote_url = args.remote_url or f"{HF_URL}/{args.hf_repo}"
    token, source = find_token()
    mask = Masker(token)
    files = planned_files(packed.members, images)

    if args.dry_run:
        print(f"dry run: would push to {mask(remote_url)} (token: {'found in ' + source if token else 'none'}):")
        for name in files:
            print(f"  {name}")
        print("----- README.md -----")
        print(card, end="")
        return None

    env = git_environment(token, remote_url)
    check_git_lfs(env, mask)
    if remote_url.startswith(HF_URL + "/") and token is None:
        logger.warning("no Hugging Face token (HF_TOKEN or `hf auth login`): git's own credentials will be used")
    if args.work_dir is not None:
        args.work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hf_upload.", dir=args.work_dir) as work:
        repo = Path(work) / "repo"
        proc = run_git(["clone", remote_url, str(repo)], None, env, mask, check=False)
        if proc.returncode != 0:
            raise UploadError(
                f"cannot clone {mask(remote_url)}: {mask(proc.stderr.strip())}\n"
                f"The repository must exist and be readable: create it at {HF_URL}/new (or "
                "`hf repo create`), check the name and your token, or pass --remote_url."
            )
        run_git(["lfs", "install", "--local"], repo, env, mask)
        run_git(["lfs", "track", *LFS_PATTERNS], repo, env, mask)

        with zipfile.ZipFile(packed.path) as archive:
            for name in packed.members:
                archive.extract(name, repo)
        for name in images:
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(args.results.parent / name, repo / name)
        (repo / "README.md").write_text(card, encoding="utf-8")
        logger.info("staged %d files from %s", len(files), packed.path)

        run_git(["add", "-A"], repo, env, mask)
        in_lfs = set(run_git(["lfs", "ls-files", "--name-only"], repo, env, mask).stdout.splitlines())
        should_be_lfs = [n for n in files if any(fnmatch.fnmatch(n.split("/")[-1], p) for p in LFS_PATTERNS)]
        not_lfs = [n for n in should_be_lfs if n not in in_lfs]
        if not_lfs:
            raise UploadError(f"these files would be pushed without git-lfs: {', '.join(not_lfs)}")
        if not run_git(["status", "--porcelain"], repo, env, mask).stdout.strip():
            logger.info("%s already holds these files: nothing to push", mask(remote_url))
            return None

        message = args.commit_message or f"Upload {packed.path.name} (espnet2_pse {espnet2_pse.__version__})"
        proc = run_git(["commit", "-q", "-m", message], repo, env, mask, check=False)
        if proc.returncode != 0 and re.search(r"tell me who you are|auto-detect|empty ident", proc.stderr, re.I):
            logger.info("no git identity configured: committing as espnet2_pse")
            proc = run_git([*_FALLBACK_IDENTITY, "commit", "-q", "-m", message], repo, env, mask, check=False)
        if proc.returncode != 0:
            raise UploadError(f"git commit failed: {mask(proc.stderr.strip())}")
        run_git(["push", "origin", "HEAD"], repo, env, mask)
        commit = run_git(["rev-parse", "HEAD"], repo, env, mask).stdout.strip()
    logger.info("pushed %d files to %s (commit %s)", len(files), mask(remote_url), commit[:12])
    return commit


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Upload a packed espnet2_pse model with its model card to a Hugging Face hub repository.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_card_arguments(parser)
    parser.add_argument(
        "--remote_url", default=None, help=f"git URL to push to instead of {HF_URL}/<hf_repo> (e.g. file:///x/bare.git)"
    )
    parser.add_argument("--commit_message", default=None, help="default: 'Upload <zip name> (espnet2_pse <version>)'")
    parser.add_argument(
        "--work_dir", type=Path, default=None, help="parent of the temporary clone (None: the system temp dir)"
    )
    parser.add_argument("--dry_run", action="store_true", help="print the files and the card; clone and push nothing")
    return parser


def main(cmd=None) -> Optional[str]:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level="INFO", format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    return push_to_hub(args)


if __name__ == "__main__":
    try:
        main()
    except (UploadError, PackedModelError, FileNotFoundError) as err:
        logger.error("%s", err)
        sys.exit(1)
