"""Training side of ``personalize``: ESPnet's trainer with progress lines, an optional time cap,
snapshots and stop requests, the progress events of :func:`espnet2_pse.api.personalize`, and
where the command's output goes (terminal or the work dir's log); :func:`train` runs one step
and :func:`pack` writes the zip."""

import contextlib
import json
import logging
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch
import yaml
from espnet2.train.reporter import aggregate
from espnet2.train.trainer import Trainer

from espnet2_pse.scoring.files import atomic_write_text
from espnet2_pse.tasks.pse import PSETask

logger = logging.getLogger("espnet2_pse.personalize")


class BudgetReached(Exception):
    """Raised before an epoch that would end after the time budget."""


class ProgressTrainer(Trainer):
    """ESPnet's trainer plus one "epoch k, elapsed, ETA" line per finished epoch, and an
    optional time cap: no epoch starts that would end after ``budget_s`` seconds (the mean
    epoch time so far predicts its end); ``cut_at`` then holds (last epoch, max_epoch). Every
    finished epoch is saved as ESPnet saves it, so stopping on the cap leaves the same files as
    reaching max_epoch."""

    label = "train"
    budget_s: Optional[float] = None
    snapshot_epochs: Tuple[int, ...] = ()
    # Called after every epoch with (epoch, max_epoch, elapsed_s, eta_s); may raise to stop.
    on_epoch: Optional[Callable[[int, int, float, float], None]] = None
    cut_at: Optional[Tuple[int, int]] = None
    _start = 0.0
    _first_epoch: Optional[int] = None
    _epochs_done = 0
    _last_epoch = 0
    _best: Optional[Tuple[float, int]] = None
    # An exception of on_epoch, raised once ESPnet has saved that epoch's checkpoint.
    _stop: Optional[Exception] = None

    @classmethod
    def run(cls, *args, **kwargs):
        cls._start, cls._first_epoch, cls._epochs_done, cls._best = time.perf_counter(), None, 0, None
        cls.cut_at, cls._stop = None, None
        try:
            result = super().run(*args, **kwargs)
        except BudgetReached:
            cls.cut_at = (cls._last_epoch, kwargs["trainer_options"].max_epoch)
            logger.info("personalize %s: time budget of %.0f s used after %d epoch(s) (%.0f s)",
                        cls.label, cls.budget_s, cls._epochs_done, time.perf_counter() - cls._start)
            return None
        finally:
            stop, cls._stop = cls._stop, None
        if stop is not None:  # asked after the last epoch: trained, not packed
            raise stop
        return result

    @classmethod
    def train_one_epoch(cls, *args, **kwargs):
        if cls._stop is not None:
            logger.info("personalize %s: stopped after epoch %d on request", cls.label, cls._last_epoch)
            raise cls._stop
        if cls.budget_s is not None and cls._epochs_done:
            elapsed = time.perf_counter() - cls._start
            if elapsed + elapsed / cls._epochs_done > cls.budget_s:
                raise BudgetReached
        return super().train_one_epoch(*args, **kwargs)

    @classmethod
    def validate_one_epoch(cls, model, iterator, reporter, options, distributed_option):
        result = super().validate_one_epoch(model, iterator, reporter, options, distributed_option)
        epoch = reporter.epoch
        if reporter.stats.get("loss"):
            loss = float(aggregate(reporter.stats["loss"]))
            if cls._best is None or loss < cls._best[0]:
                cls._best = (loss, epoch)
        if cls._first_epoch is None:
            cls._first_epoch = epoch  # a resumed run starts later: time only this process's epochs
        cls._epochs_done = epoch - cls._first_epoch + 1
        cls._last_epoch = epoch
        elapsed = time.perf_counter() - cls._start
        if epoch in cls.snapshot_epochs:
            cls._snapshot(model, Path(options.output_dir), epoch, elapsed)
        eta = elapsed / cls._epochs_done * (options.max_epoch - epoch)
        if cls.budget_s is not None:
            eta = min(eta, max(0.0, cls.budget_s - elapsed))
        best = f", best valid loss {cls._best[0]:.2f} (epoch {cls._best[1]})" if cls._best else ""
        logger.info("personalize %s: epoch %d, elapsed %.0f s, ETA %.0f s%s", cls.label, epoch, elapsed, eta, best)
        if cls.on_epoch is not None:
            try:
                cls.on_epoch(epoch, options.max_epoch, elapsed, eta)
            except Exception as err:  # a stop request: honoured once this epoch is saved
                cls._stop = err
        return result

    @classmethod
    def _snapshot(cls, model, exp: Path, epoch: int, elapsed: float) -> None:
        """The model after ``epoch`` as snapshot_ep<epoch>.pth, its training time in snapshots.json."""
        torch.save(getattr(model, "module", model).state_dict(), exp / f"snapshot_ep{epoch}.pth")
        record = exp / "snapshots.json"
        times = json.loads(record.read_text()) if record.is_file() else {}
        times[str(epoch)] = {"elapsed_s": round(elapsed, 1),
                             "resumed": cls._first_epoch != 1}  # elapsed counts this process's epochs only
        record.write_text(json.dumps(times, indent=1))


class PersonalizeTask(PSETask):
    """PSETask with the progress trainer; configs and checkpoints are PSETask's."""

    trainer = ProgressTrainer


# Share of a whole run per step, for the progress fraction (default run on 2 idle cores: data
# about 25 s, zero-shot 7 min with the teacher's outputs, few-shot 50 s, packing under a second).
_STEP_SHARES = {"data": 0.06, "zsl": 0.83, "fsl": 0.11}


class Progress:
    """Turns steps and epochs into the dicts of ``personalize(progress=...)`` (see espnet2_pse.api)."""

    def __init__(self, callback: Optional[Callable[[dict], None]], steps: Tuple[str, ...]):
        """``steps``: the training steps this run makes, in order, after "data"."""
        self.callback = callback
        steps = ("data",) + tuple(steps)
        total = sum(_STEP_SHARES[step] for step in steps)
        self.shares = {step: _STEP_SHARES[step] / total for step in steps}
        self.start_of, done = {}, 0.0
        for step in steps:
            self.start_of[step], done = done, done + self.shares[step]
        self.started = time.perf_counter()

    def step(self, step: str) -> None:
        """Called as ``step`` begins ("data", "zsl", "fsl", "pack") or with "done"."""
        fraction = 1.0 if step in ("pack", "done") else self.start_of[step]
        self._send({"step": step, "elapsed_s": time.perf_counter() - self.started, "fraction": fraction})

    def epochs(self, step: str) -> Callable[[int, int, float, float], None]:
        def on_epoch(epoch: int, max_epoch: int, elapsed: float, eta: float) -> None:
            fraction = self.start_of[step] + self.shares[step] * min(1.0, epoch / max_epoch)
            self._send({"step": step, "epoch": epoch, "max_epoch": max_epoch,
                        "elapsed_s": time.perf_counter() - self.started, "eta_s": eta, "fraction": fraction})
        return on_epoch

    def _send(self, event: dict) -> None:
        if self.callback is not None:
            self.callback(event)


@contextlib.contextmanager
def espnet_prints_to_log(work: Path):
    """ESPnet prints its command lines and archive members: into the work dir's log, not the terminal."""
    with open(work / "personalize.log", "a", encoding="utf-8") as log, \
            contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        yield


def _terminal_record(record: logging.LogRecord) -> bool:
    """What the terminal shows: this command's own lines, warnings of espnet2_pse, any error."""
    if record.levelno >= logging.ERROR:
        return True
    return record.name.startswith("espnet2_pse") and (record.name == logger.name or record.levelno >= logging.WARNING)


def setup_logging(work: Path, terminal: bool = True) -> List[logging.Handler]:
    """Progress lines on the terminal (unless ``terminal`` is False); everything (ESPnet's
    trainer log included) in ``<work>/personalize.log``. Returns the handlers added to the
    root logger (undo with :func:`remove_logging`)."""
    work.mkdir(parents=True, exist_ok=True)
    log_path = work / "personalize.log"
    fmt = logging.Formatter("%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    to_file = logging.FileHandler(log_path, encoding="utf-8")
    to_file.setFormatter(fmt)
    handlers: List[logging.Handler] = [to_file]
    if terminal:
        to_terminal = logging.StreamHandler(sys.stderr)
        to_terminal.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        to_terminal.addFilter(_terminal_record)
        handlers.append(to_terminal)
    root = logging.getLogger()
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)  # torch/ESPnet warnings go to the log file, not the terminal
    return handlers


def remove_logging(handlers: List[logging.Handler]) -> None:
    logging.captureWarnings(False)
    for handler in handlers:
        logging.getLogger().removeHandler(handler)
        handler.close()


def train(args, name: str, exp: Path, config: Dict, train_dir: Path, valid_dir: Path,
          init_param: Optional[Path], budget_minutes: Optional[float], select: str = "valid.loss.best.pth",
          cut_short: Optional[List[str]] = None,
          on_epoch: Optional[Callable[[int, int, float, float], None]] = None,
          extra_train_data: Tuple[str, ...] = ()) -> Path:
    """Train (or resume, or skip when done) one model; returns its selected checkpoint. When the
    time cap ends the training before max_epoch, a line saying so is appended to ``cut_short``.
    ``on_epoch(epoch, max_epoch, elapsed_s, eta_s)`` follows the epochs; ``extra_train_data``
    holds more "scp,name,type" training inputs (the teacher's precomputed outputs)."""
    best = exp / select
    settings = {"config": config, "train": str(train_dir), "valid": str(valid_dir),
                "init_param": str(init_param) if init_param else None, "train_args": args.train_args,
                "budget_minutes": budget_minutes}
    if extra_train_data:
        settings["extra_train_data"] = list(extra_train_data)
    record = exp / "personalize_settings.yaml"
    if record.is_file():
        old = yaml.safe_load(record.read_text(encoding="utf-8"))
        if old != settings:
            raise ValueError(f"{exp} was trained with other settings; use another --work_dir or remove {exp}")
        if (exp / ".done").is_file() and best.exists():
            logger.info("personalize %s: already trained (%s); skipping", name, exp)
            return best
        logger.info("personalize %s: resuming the interrupted training in %s", name, exp)
    exp.mkdir(parents=True, exist_ok=True)
    (exp / "train_config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    atomic_write_text(record, yaml.safe_dump(settings, sort_keys=False))
    cmd = [
        "--config", str(exp / "train_config.yaml"), "--output_dir", str(exp), "--resume", "true",
        "--ngpu", str(args.ngpu),
        "--train_data_path_and_name_and_type", f"{train_dir}/spk1.scp,speech_ref1,sound",
        "--train_shape_file", f"{train_dir}/spk1.scp",
        *[option for data in extra_train_data for option in ("--train_data_path_and_name_and_type", data)],
        "--valid_data_path_and_name_and_type", f"{valid_dir}/wav.scp,speech_mix,sound",
        "--valid_data_path_and_name_and_type", f"{valid_dir}/spk1.scp,speech_ref1,sound",
        "--valid_shape_file", f"{valid_dir}/wav.scp",
    ]
    if init_param is not None:
        cmd += ["--init_param", str(init_param)]
    cmd += shlex.split(args.train_args)
    cap = f", stopped after {budget_minutes:g} min" if budget_minutes else ""
    logger.info("personalize %s: training %d epochs%s in %s", name, config["max_epoch"], cap, exp)
    ProgressTrainer.label = name
    ProgressTrainer.budget_s = budget_minutes * 60 if budget_minutes else None
    ProgressTrainer.snapshot_epochs = tuple(args.snapshot_epochs)
    ProgressTrainer.on_epoch = on_epoch
    try:
        with espnet_prints_to_log(exp.parent.parent):  # exp is <work_dir>/exp/<step>
            PersonalizeTask.main(cmd=cmd)
    finally:
        ProgressTrainer.on_epoch = None
    if not best.exists():
        raise RuntimeError(f"{exp}: training ended without {best.name}; see {exp.parent.parent / 'personalize.log'}")
    if ProgressTrainer.cut_at is not None and cut_short is not None:
        done, planned = ProgressTrainer.cut_at
        cut_short.append(f"personalize {name}: the {budget_minutes:g}-min cap ended training after epoch {done} "
                         f"of {planned}; the model may be weaker than a full run's (rerun without the cap for "
                         "the full training; a busy machine trains fewer epochs in the same time)")
    (exp / ".done").touch()
    return best


def pack(work: Path, config: Path, model_file: Path, out: Path, summary: Path) -> None:
    """``espnet2.bin.pack enh`` into ``out`` via a temporary name.

    Runs from the work dir, so the archive holds exp/... paths rather than absolute ones.
    """
    from espnet2.bin import pack as espnet_pack

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.tmp.zip")
    try:
        with contextlib.chdir(work), espnet_prints_to_log(work):
            espnet_pack.main(["enh", "--train_config", str(config), "--model_file", str(model_file),
                              "--option", str(summary), "--outpath", str(tmp)])
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
