"""PseudoSE: learn to map a further-corrupted recording back to the recording itself."""

from typing import Dict, Optional, Sequence, Union

import torch

from espnet2_pse.ssl.mixing import SPEAKER_INDEX_KEY, TalkerInjector, blend_with_teacher, scale_batch
from espnet2_pse.ssl.on_the_fly import OnTheFlyObjective, length_mask
from espnet2_pse.ssl.teacher import TEACHER_OUTPUT_KEY


class PseudoSE(OnTheFlyObjective):
    """f(s~ + n) -> s~, with s~ the pseudo-source (methods.md, PART 1, 1.4(a)).

    With ``premix_noise_scp`` null and clean speech as data, this is ordinary supervised
    enhancement with on-the-fly noise: the generalist and few-shot fine-tuning use it so.

    With a ``teacher`` (a trained enhancement model, {config: ..., model_file: ...}), its
    output t = T(s~) cleans the pseudo-target: the target becomes
    ``teacher_weight * t + (1 - teacher_weight) * s~``, and with ``teacher_input`` the noise
    is injected into t instead of s~ (the student then learns t + n -> t). With
    ``teacher_weight_above`` the share above ``teacher_split_hz`` is that weight instead, and
    with ``teacher_weight_noise`` the share moves to that weight in the time-frequency cells
    that the teacher removes (:func:`blend_with_teacher`): the teacher's cleaner background
    where the recording holds noise, the recording itself where it holds speech. With
    ``teacher_reference`` the batch also carries t itself (``others["teacher_reference"]``), so
    that a loss wrapper with ``reference: teacher`` scores against the teacher alone while the
    others score against the blend. When the batch carries the teacher's precomputed outputs
    (``TEACHER_OUTPUT_KEY``, from :func:`espnet2_pse.ssl.teacher.write_teacher_outputs`), they
    are used and the teacher never runs.

    With ``talker_scp`` (other voices' utterances) a share ``talker_prob`` of the inputs also
    holds one interfering talker at ``talker_tir_range`` dB against s~, a share
    ``talker_alone_prob`` of those without the injection noise (:class:`TalkerInjector`); the
    target never holds the talker, so the model learns to keep its user's voice only. When the
    bank holds the training voices themselves (a generalist), ``talker_utt2spk`` (the bank's
    utt2spk) and the batch entry ``spk_index`` (the examples' speakers, from the data dir's
    ``utt2spk_index``) keep every example's talker another person. The other arguments are
    those of :class:`OnTheFlyObjective`.
    """

    def __init__(self, *args, teacher: Optional[Dict[str, str]] = None, teacher_weight: float = 1.0,
                 teacher_input: bool = False, teacher_reference: bool = False,
                 teacher_weight_above: Optional[float] = None, teacher_split_hz: float = 4000.0,
                 teacher_weight_noise: Optional[float] = None,
                 talker_scp: Union[None, str, Sequence[str]] = None,
                 talker_prob: float = 0.5, talker_tir_range: Sequence[float] = (0.0, 10.0),
                 talker_alone_prob: float = 0.25, talker_utt2spk: Optional[str] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.talkers = None
        if talker_scp:
            self.talkers = TalkerInjector(talker_scp, talker_prob, talker_tir_range, talker_alone_prob,
                                          self.mixer.inject_snr.distribution, self.mixer.inject_bank.sample_rate,
                                          utt2spk=talker_utt2spk)
        elif talker_utt2spk:
            raise ValueError("talker_utt2spk needs talker_scp (the bank it labels)")
        if teacher is not None and set(teacher) != {"config", "model_file"}:
            raise ValueError(f"teacher needs exactly the keys 'config' and 'model_file', got {sorted(teacher)}")
        if not 0.0 <= teacher_weight <= 1.0:
            raise ValueError(f"teacher_weight must be in [0, 1], got {teacher_weight}")
        shares = {"teacher_weight_above": teacher_weight_above, "teacher_weight_noise": teacher_weight_noise}
        if teacher is None and (teacher_input or teacher_reference or any(v is not None for v in shares.values())):
            raise ValueError("teacher_input, teacher_reference, teacher_weight_above and teacher_weight_noise "
                             "need a teacher")
        for name, value in shares.items():
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if teacher_weight_above is not None:
            nyquist = self.mixer.inject_bank.sample_rate / 2
            if not 0.0 < teacher_split_hz < nyquist:
                raise ValueError(f"teacher_split_hz must be in (0, {nyquist:g}) Hz, got {teacher_split_hz}")
        self.teacher_files = teacher
        self.teacher_weight = teacher_weight
        self.teacher_input = teacher_input
        self.teacher_reference = teacher_reference
        self.teacher_weight_above = teacher_weight_above
        self.teacher_split_hz = teacher_split_hz
        self.teacher_weight_noise = teacher_weight_noise
        self._teacher = None

    def _teacher_outputs(self, pseudo_source: torch.Tensor) -> torch.Tensor:
        from espnet2_pse.ssl.teacher import load_teacher, teacher_outputs

        if self._teacher is None:
            self._teacher = load_teacher(self.teacher_files["config"], self.teacher_files["model_file"],
                                         device=pseudo_source.device)
        return teacher_outputs(self._teacher, pseudo_source)

    def make_batch(self, speech: torch.Tensor, mask: torch.Tensor, speakers: Optional[torch.Tensor] = None,
                   precomputed: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """(B, T) speech crops (and their (B,) speaker indices, for ``talker_utt2spk``, and the
        teacher's (B, T) ``precomputed`` outputs on them) -> dict of (B, T) ``input`` and
        ``target`` and (B,) ``snr`` (dB); with ``teacher_reference`` also the (B, T)
        ``teacher`` output, scaled like the target."""
        batch, length = speech.shape
        if precomputed is not None and (self.teacher_files is None or self.mixer.premix_bank is not None):
            raise ValueError(f"the batch holds precomputed teacher outputs ({TEACHER_OUTPUT_KEY}), but this "
                             "PseudoSE " + ("has no teacher" if self.teacher_files is None else
                                            "adds premixture noise, which the teacher never saw"))
        target = self.mixer.pseudo_source(speech, self.generator) * mask
        source, cleaned = target, None
        if self.teacher_files is not None:
            if precomputed is None:
                precomputed = self._teacher_outputs(target)
            cleaned = precomputed.to(target) * mask
            if self.teacher_input:
                source = cleaned
            target = blend_with_teacher(cleaned, target, self.teacher_weight, self.mixer.inject_bank.sample_rate,
                                        self.teacher_weight_above, self.teacher_split_hz,
                                        self.teacher_weight_noise) * mask
        noise, snr = self.mixer.injection(batch, length, self.generator)
        talker = None
        if self.talkers is not None:
            talker, keep_noise = self.talkers(source, self.generator, speakers)
            noise = noise * keep_noise[:, None]
        mixture = self.inject(source, noise, snr, mask)
        if talker is not None:
            mixture = mixture + talker * mask
        extra = [cleaned] if self.teacher_reference else []
        if self.batch_scaling:
            mixture, target, *extra = scale_batch(mixture, target, *extra)
        made = {"input": mixture, "target": target, "snr": snr}
        if extra:
            made["teacher"] = extra[0]
        return made

    def __call__(
        self,
        model,
        speech: torch.Tensor,
        speech_lengths: Optional[torch.Tensor],
        additional: Dict[str, torch.Tensor],
    ):
        batch, length = speech.shape
        made = self.make_batch(speech, length_mask(speech_lengths, batch, length, speech),
                               additional.get(SPEAKER_INDEX_KEY), additional.get(TEACHER_OUTPUT_KEY))
        loss, stats, weight, _ = model.forward_supervised(
            made["input"],
            speech_lengths,
            made["target"],
            additional,
            dp_weight=self.dp_weights(made["target"]),
            teacher_reference=made.get("teacher"),
        )
        return loss, stats, weight
