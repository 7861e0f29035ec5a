"""PSETask: ESPnet's enhancement task with self-supervised objectives and speaker inputs."""

import argparse
from typing import Tuple

from espnet2.tasks.enh import EnhancementTask

from espnet2_pse.models.pse_model import PSEModel
from espnet2_pse.ssl.abs_objective import ssl_objective_choices
from espnet2_pse.ssl.mixing import SPEAKER_INDEX_KEY
from espnet2_pse.ssl.teacher import TEACHER_OUTPUT_KEY

# Data names of speaker inputs: a conditioned separator's enrollment (audio or embedding), and
# the training examples' speaker indices for speaker-aware talker injection.
SPEAKER_DATA_NAMES = ("enroll_ref1", SPEAKER_INDEX_KEY)


class PSETask(EnhancementTask):
    """Adds ``--ssl_objective`` (+ ``_conf``) to ``EnhancementTask`` and builds a PSEModel.

    Everything else (encoders, separators, criteria, iterators, DDP) is ESPnet's.
    """

    # A copy: the parent's list must stay untouched for the stock enh task.
    class_choices_list = list(EnhancementTask.class_choices_list) + [ssl_objective_choices]

    @classmethod
    def optional_data_names(cls, train: bool = True, inference: bool = False) -> Tuple[str, ...]:
        return super().optional_data_names(train, inference) + SPEAKER_DATA_NAMES + (TEACHER_OUTPUT_KEY,)

    @classmethod
    def build_model(cls, args: argparse.Namespace) -> PSEModel:
        model = super().build_model(args)
        objective = None
        if getattr(args, "ssl_objective", None) is not None:
            objective_class = ssl_objective_choices.get_class(args.ssl_objective)
            try:
                objective = objective_class(**(args.ssl_objective_conf or {}))
            except TypeError as e:
                raise ValueError(f"ssl_objective_conf for '{args.ssl_objective}': {e}") from None
            objective.check_model(model)
        return PSEModel.from_enhancement_model(model, objective)
