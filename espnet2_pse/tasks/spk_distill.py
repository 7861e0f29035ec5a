"""SpkDistillTask: train a tiny speaker encoder from a frozen teacher's embeddings.

Data: ``speech`` (clean utterances, sound) and optionally ``spk_labels`` (text, e.g. the
data dir's utt2spk) to treat same-speaker crops as positives. Noise for the student's views
comes from ``--noise_scp``. The teacher is named by ``--teacher_train_config`` +
``--teacher_model_file`` (an ESPnet speaker model trained with espnet2.bin.spk_train) or
``--teacher_model_tag`` (pretrained: ``resemblyzer`` offline, a model-zoo tag with network
or cache); it is loaded on the first training step and never saved.
``build_student_from_file`` rebuilds the trained student without the teacher.

``--kd_loss aamsoftmax`` is the from-scratch baseline: no teacher, a speaker classifier head
over the speakers of ``--spk2utt`` (spk_labels become class ids 0..N-1); ``infonce_aam``
adds that head to contrastive KD.
"""

import argparse
import functools
import inspect
import logging
from pathlib import Path
from typing import Callable, Collection, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
from typeguard import typechecked

from espnet2.tasks.abs_task import AbsTask
from espnet2.torch_utils.initialize import initialize
from espnet2.train.class_choices import ClassChoices
from espnet2.train.collate_fn import CommonCollateFn
from espnet2.train.trainer import Trainer
from espnet2.utils.get_default_kwargs import get_default_kwargs
from espnet2.utils.nested_dict_action import NestedDictAction
from espnet2.utils.types import str2bool, str_or_none
from espnet2_pse.spk.abs_student import AbsSpkStudent
from espnet2_pse.spk.espnet_model import ESPnetSpkDistillModel
from espnet2_pse.spk.kd_losses import AbsKDLoss
from espnet2_pse.spk.preprocessor import SpkDistillPreprocessor, speaker_index
from espnet2_pse.spk.teacher import FrozenTeacher, load_teacher

# Filled by espnet2_pse.spk.register_classes when espnet2_pse is imported.
student_choices = ClassChoices(
    name="student", classes=dict(), type_check=AbsSpkStudent, default="tiny"
)
kd_loss_choices = ClassChoices(
    name="kd_loss", classes=dict(), type_check=AbsKDLoss, default="infonce"
)


class SpkDistillTask(AbsTask):
    """Distillation of a student speaker encoder (ESPnetSpkDistillModel)."""

    num_optimizers: int = 1
    class_choices_list = [student_choices, kd_loss_choices]
    trainer = Trainer

    @classmethod
    def add_task_arguments(cls, parser: argparse.ArgumentParser):
        group = parser.add_argument_group(description="Task related")
        group.add_argument(
            "--init",
            type=lambda x: str_or_none(x.lower()),
            default=None,
            choices=["chainer", "xavier_uniform", "xavier_normal", "kaiming_uniform",
                     "kaiming_normal", None],
            help="Initialisation of the student",
        )
        group.add_argument("--model_conf", action=NestedDictAction,
                           default=get_default_kwargs(ESPnetSpkDistillModel),
                           help="Keyword arguments of ESPnetSpkDistillModel (views, SNRs)")
        group.add_argument("--teacher_train_config", type=str_or_none, default=None,
                           help="config.yaml of an ESPnet speaker model (espnet2.bin.spk_train)")
        group.add_argument("--teacher_model_file", type=str_or_none, default=None,
                           help="Checkpoint (.pth) of that speaker model")
        group.add_argument("--teacher_model_tag", type=str_or_none, default=None,
                           help="Pretrained speaker model: resemblyzer (GE2E weights of the resemblyzer wheel, "
                           "offline, 256-d) or a model-zoo tag, e.g. espnet/voxcelebs12_rawnet3 "
                           "(downloaded through espnet_model_zoo; needs network or cache)")

        group = parser.add_argument_group(description="Preprocess related")
        group.add_argument("--use_preprocessor", type=str2bool, default=True,
                           help="Crop teacher views and attach noise (needed for training)")
        group.add_argument("--sample_rate", type=int, default=16000, help="Hz")
        group.add_argument("--teacher_crop_s", type=float, default=4.0,
                           help="Length in seconds of the clean crop the teacher embeds")
        group.add_argument("--noise_scp", type=str_or_none, default=None,
                           help="'key path' list of noise wavs mixed into the student views")
        group.add_argument("--spk2utt", type=str_or_none, default=None,
                           help="Kaldi spk2utt of the training speakers: spk_labels become "
                           "class ids 0..N-1 in sorted name order and N fills kd_loss_conf "
                           "num_speakers (needed by kd_loss aamsoftmax and infonce_aam; every labelled "
                           "speaker, validation included, must be listed)")
        group.add_argument("--speed_perturb_factors", type=float, nargs="+", default=[1.0],
                           help="Speed perturbation of the training utterances (e.g. 0.9 1.0 1.1): "
                           "each factor of a speaker is a voice of its own, embedded by the teacher "
                           "as perturbed (with --spk2utt: N x factors classes)")

        for class_choices in cls.class_choices_list:
            class_choices.add_arguments(group)

    @classmethod
    def check_required_command_args(cls, args: argparse.Namespace):
        super().check_required_command_args(args)
        if args.collect_stats or args.dry_run:
            return
        # Fail before the first batch, not at it: the teacher itself is loaded lazily.
        has_teacher = bool(args.teacher_model_file or args.teacher_model_tag)
        if kd_loss_choices.get_class(args.kd_loss).uses_teacher:
            if not has_teacher:
                raise ValueError(
                    f"SpkDistillTask with kd_loss {args.kd_loss} needs a teacher: "
                    "--teacher_model_file (+ --teacher_train_config) or --teacher_model_tag"
                )
        elif has_teacher:
            logging.warning(f"kd_loss {args.kd_loss} uses no teacher: the teacher is ignored")
        for key in ("teacher_train_config", "teacher_model_file", "noise_scp", "spk2utt"):
            path = getattr(args, key)
            if path is not None and not Path(path).is_file():
                raise FileNotFoundError(f"--{key} {path} does not exist")

    @classmethod
    @typechecked
    def build_collate_fn(cls, args: argparse.Namespace, train: bool) -> Callable[
        [Collection[Tuple[str, Dict[str, np.ndarray]]]],
        Tuple[List[str], Dict[str, torch.Tensor]],
    ]:
        return CommonCollateFn(float_pad_value=0.0, int_pad_value=-1)

    @classmethod
    @typechecked
    def build_preprocess_fn(
        cls, args: argparse.Namespace, train: bool
    ) -> Optional[Callable[[str, Dict[str, np.array]], Dict[str, np.ndarray]]]:
        if not args.use_preprocessor:
            return None
        return SpkDistillPreprocessor(
            train=train,
            crop_s=args.teacher_crop_s,
            sample_rate=args.sample_rate,
            noise_scp=args.noise_scp,
            seed=args.seed,
            spk2utt=args.spk2utt,
            speed_factors=getattr(args, "speed_perturb_factors", (1.0,)),
        )

    @classmethod
    def required_data_names(
        cls, train: bool = True, inference: bool = False
    ) -> Tuple[str, ...]:
        return ("speech",)

    @classmethod
    def optional_data_names(
        cls, train: bool = True, inference: bool = False
    ) -> Tuple[str, ...]:
        return ("spk_labels",)

    @classmethod
    @typechecked
    def build_model(cls, args: argparse.Namespace) -> ESPnetSpkDistillModel:
        student_class = student_choices.get_class(args.student)
        student_conf = dict(args.student_conf)
        if "sample_rate" in inspect.signature(student_class).parameters:
            # One rate for the data and the student's features unless set explicitly.
            student_conf.setdefault("sample_rate", args.sample_rate)
        student = student_class(**student_conf)
        kd_loss_class = kd_loss_choices.get_class(args.kd_loss)
        # A classifier head's size is stored in args.kd_loss_conf, hence in config.yaml:
        # rebuilding the model for inference then needs neither --spk2utt nor its file.
        args.kd_loss_conf = cls._complete_head_conf(
            kd_loss_class, dict(args.kd_loss_conf), student, getattr(args, "spk2utt", None),
            len(getattr(args, "speed_perturb_factors", (1.0,))),
        )
        try:
            kd_loss = kd_loss_class(**args.kd_loss_conf)
        except TypeError as e:  # e.g. InfoNCE's temperature left in the conf of "cosine"
            raise ValueError(f"kd_loss_conf for '{args.kd_loss}': {e}") from None
        teacher = None
        train_config = getattr(args, "teacher_train_config", None)
        model_file = getattr(args, "teacher_model_file", None)
        model_tag = getattr(args, "teacher_model_tag", None)
        if kd_loss_class.uses_teacher and (model_file or model_tag):
            teacher = FrozenTeacher(
                loader=functools.partial(load_teacher, train_config, model_file, model_tag)
            )
        model = ESPnetSpkDistillModel(
            student=student,
            kd_loss=kd_loss,
            teacher=teacher,
            sample_rate=args.sample_rate,
            **args.model_conf,
        )
        if args.init is not None:
            initialize(model, args.init)
        return model

    @staticmethod
    def has_class_head(kd_loss_class: type) -> bool:
        """Whether a kd_loss classifies speakers (its class ids and count come from --spk2utt)."""
        return "num_speakers" in inspect.signature(kd_loss_class).parameters

    @classmethod
    def _complete_head_conf(
        cls, kd_loss_class: type, conf: Dict, student: AbsSpkStudent, spk2utt: Optional[str],
        speed_factors: int = 1,
    ) -> Dict:
        """Fill ``embed_dim`` and ``num_speakers`` of a loss with a classifier head.

        Each speed-perturbation factor makes each speaker a class of its own.
        """
        if "embed_dim" in inspect.signature(kd_loss_class).parameters:
            conf.setdefault("embed_dim", student.output_size())
        # When rebuilding from config.yaml, num_speakers is set and the file may be gone.
        if cls.has_class_head(kd_loss_class) and spk2utt and (
            "num_speakers" not in conf or Path(spk2utt).is_file()
        ):
            speakers = len(speaker_index(spk2utt))
            count = speakers * speed_factors
            conf.setdefault("num_speakers", count)
            if conf["num_speakers"] < count:
                what = f"{count} speakers of --spk2utt {spk2utt}"
                if speed_factors > 1:
                    what = (f"{count} classes ({speakers} speakers of --spk2utt {spk2utt} x "
                            f"{speed_factors} --speed_perturb_factors)")
                raise ValueError(f"kd_loss_conf num_speakers={conf['num_speakers']} is smaller than the {what}")
        return conf

    @classmethod
    def build_student_from_file(
        cls,
        config_file: Optional[Union[Path, str]] = None,
        model_file: Optional[Union[Path, str]] = None,
        device: str = "cpu",
    ) -> AbsSpkStudent:
        """The trained student alone, in eval mode (the teacher is not loaded)."""
        model, _ = cls.build_model_from_file(config_file, model_file, device)
        return model.student.eval()
