"""Personalization as a background job of the app, driven by :func:`espnet2_pse.personalize`.

One job at a time. Its progress is the API's progress dict; cancelling raises from the
progress callback, which stops training once the current epoch is saved, and starting again
with the same recordings resumes from there (personalize's own resume). Adding or removing a
recording makes the next start a fresh run.
"""

import argparse
import logging
import shlex
import threading
import time
from typing import Optional

from espnet2_pse.app.workspace import Workspace, read_json_or_none, remove_tree, write_json

logger = logging.getLogger(__name__)

# What the page may set; everything else comes from pse-app --personalize_args or the defaults.
PAGE_OPTIONS = {"max_epoch": int, "fsl_max_epoch": int, "causal": bool}


class Cancelled(Exception):
    """Raised from the progress callback when the user cancels."""


def options_from_argv(argv: str) -> dict:
    """``"--max_epoch 3 --causal"`` -> ``{"max_epoch": 3, "causal": True}``: the options of
    ``pse-personalize`` that differ from its defaults (checked by its parser)."""
    from espnet2_pse.bin.personalize import get_parser

    parser = get_parser()
    required = ["--noisy_dir", "-", "--out", "-"]
    try:
        given = vars(parser.parse_args(required + shlex.split(argv)))
    except SystemExit:
        raise ValueError(f"--personalize_args: pse-personalize refuses {argv!r} (see pse-personalize --help)") from None
    defaults = vars(parser.parse_args(required))
    return {k: v for k, v in given.items() if v != defaults[k] and k not in ("noisy_dir", "out")}


class PersonalizeJob:
    """The app's personalization: ``start(page_options)``, ``cancel()``, ``status()``."""

    def __init__(self, workspace: Workspace, base_options: Optional[dict] = None):
        self.workspace = workspace
        self.base_options = dict(base_options or {})
        self.work = workspace.root / "personalize"
        self.model_path = workspace.root / "models" / "personal.zip"
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._cancel = threading.Event()
        self._status = {"state": "idle", "fraction": 0.0}

    def defaults(self) -> dict:
        """The epochs a run gets when the page leaves them empty (the fields' placeholders). With
        clean speech alone there is no zero-shot step, and the few-shot length follows the
        clean seconds (personalize's rule), so those say so instead of a number."""
        from espnet2_pse.bin.personalize import DEFAULT_FSL_EPOCHS, DEFAULT_ZSL_EPOCHS

        clean_only = self.workspace.has_recordings("clean") and not self.workspace.has_recordings("noisy")
        return {"max_epoch": "skipped: clean speech only" if clean_only
                else self.base_options.get("max_epoch", DEFAULT_ZSL_EPOCHS),
                "fsl_max_epoch": self.base_options.get(
                    "fsl_max_epoch", "from the clean seconds" if clean_only else DEFAULT_FSL_EPOCHS)}

    def status(self) -> dict:
        with self._lock:
            return dict(self._status)

    def _set(self, **changes) -> None:
        with self._lock:
            self._status.update(changes)

    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, page_options: dict) -> dict:
        """Start (or resume) in a background thread; ValueError if one is running or the
        recordings or options are refused."""
        options = {**self.base_options, **_checked(page_options)}
        if not self.workspace.has_recordings("noisy") and not self.workspace.has_recordings("clean"):
            raise ValueError("upload some recordings of your voice first (everyday ones, clean speech or both)")
        with self._lock:
            if self.running():
                raise ValueError("a personalization is already running")
            self._cancel.clear()
            self._status = {"state": "running", "fraction": 0.0, "step": "data", "started": time.time()}
        marker = self.work / "app_run.json"
        run = {"recordings": self.workspace.fingerprint(), "options": {k: str(v) for k, v in options.items()}}
        resumed = read_json_or_none(marker) == run
        if not resumed:  # other recordings or options: start afresh
            remove_tree(self.work)
            self.work.mkdir(parents=True)
            write_json(marker, run)
        self._set(resumed=resumed)
        self._thread = threading.Thread(target=self._run, args=(options,), name="personalize", daemon=True)
        self._thread.start()
        return self.status()

    def cancel(self) -> dict:
        if self.running():
            self._cancel.set()
            self._set(state="cancelling")
        return self.status()

    def _progress(self, event: dict) -> None:
        self._set(**{k: event.get(k) for k in ("step", "epoch", "max_epoch", "eta_s", "fraction", "elapsed_s")})
        if self._cancel.is_set():
            raise Cancelled()

    def _run(self, options: dict) -> None:
        import espnet2_pse

        noisy, clean = (self.workspace.recordings_dir(kind) for kind in ("noisy", "clean"))
        try:  # clean speech alone: few-shot straight from the generalist
            espnet2_pse.personalize(
                noisy if any(noisy.glob("*.wav")) else None, self.model_path,
                clean_dir=clean if any(clean.glob("*.wav")) else None,
                progress=self._progress, quiet=True, work_dir=self.work, **options)
        except Cancelled:
            self._set(state="cancelled", message="cancelled; start again to resume from the last saved epoch")
            return
        except Exception as err:  # shown on the page; the full trace is in the log
            logger.exception("personalization failed")
            self._set(state="failed", message=f"{type(err).__name__}: {err}")
            return
        self._set(state="done", fraction=1.0, eta_s=0, message=f"wrote {self.model_path.name}")


def _checked(page_options: dict) -> dict:
    options = {}
    for name, value in page_options.items():
        if name not in PAGE_OPTIONS:
            raise ValueError(f"unknown personalization option {name!r}; the page may set {', '.join(PAGE_OPTIONS)}")
        kind = PAGE_OPTIONS[name]
        if kind is bool:
            options[name] = bool(value)
            continue
        try:
            number = kind(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a whole number, got {value!r}") from None
        if number < 1:
            raise ValueError(f"{name} must be at least 1, got {number}")
        options[name] = number
    return options


def parse_personalize_args(text: str) -> dict:
    """pse-app's ``--personalize_args`` for argparse ``type=`` (errors as usage errors)."""
    try:
        return options_from_argv(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None

