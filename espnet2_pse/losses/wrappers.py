"""Fixed-order loss wrapper that applies Data Purification (DP) weights and can score against
the teacher's output instead of the objective's target."""

from collections import defaultdict
from typing import Dict, List, Optional, Sequence, Union

import torch
from espnet2.enh.loss.criterions.abs_loss import AbsEnhLoss
from espnet2.enh.loss.wrappers.abs_wrapper import AbsLossWrapper

from espnet2_pse.losses.distances import weighted_frame_mean

# Key of the DP weights in the ``others`` dict that ESPnet passes to every wrapper.
DP_WEIGHT_KEY = "dp_weight"
# Key of the teacher's output (B, T) that PseudoSE adds with teacher_reference: true.
TEACHER_REFERENCE_KEY = "teacher_reference"
REFERENCES = ("target", "teacher")

Weights = Union[None, torch.Tensor, Sequence[torch.Tensor]]


class DPWeightedFixedOrder(AbsLossWrapper):
    """ESPnet's fixed-order solver, weighted by ``others["dp_weight"]`` when present.

    Sources are paired in order (no permutation search) and averaged uniformly, as in
    ``fixed_order``. The DP weights, detached, can be:

    - absent: the loss equals ``fixed_order`` with the same criterion;
    - a (B, F) tensor: per-frame weights; the criterion must be segmental (it provides
      ``framewise(ref, inf) -> (B, F)``) and each example's loss is mean_t(w_t * l_t),
      not renormalised by sum_t w_t;
    - a (B,) tensor: per-example weights, loss = mean_b(w_b * l_b), not renormalised;
    - a list with one such tensor per source.

    With ``reference: teacher`` the single reference is ``others["teacher_reference"]`` (the
    teacher's output that PseudoSE passes with ``teacher_reference: true``) when the batch has
    one, and the given reference otherwise (validation on real mixtures): one criterion can
    then learn from the teacher alone while another learns from the blended target.

    YAML: ``{name: pse_distance, conf: {segmental: true}, wrapper: dp_fixed_order,
    wrapper_conf: {weight: 1.0}}``.

    Args:
        criterion: the distance (an ESPnet AbsEnhLoss).
        weight: weight of this loss in ESPnet's multi-task sum.
        reference: "target" (the objective's target, the default) or "teacher".
    """

    def __init__(self, criterion: AbsEnhLoss, weight: float = 1.0, reference: str = "target"):
        super().__init__()
        if reference not in REFERENCES:
            raise ValueError(f"dp_fixed_order: reference '{reference}' is not one of {REFERENCES}")
        self.criterion = criterion
        self.weight = weight
        self.reference = reference

    def forward(
        self,
        ref: List[torch.Tensor],
        inf: List[torch.Tensor],
        others: Optional[Dict] = None,
    ):
        """Weighted fixed-order loss.

        Args:
            ref: [(B, T), ...] x num_spk references.
            inf: [(B, T), ...] x num_spk estimates, in the same order.
            others: ESPnet's side channel; ``others["dp_weight"]`` holds the DP weights.
        Returns:
            loss: scalar, mean over examples and sources.
            stats: {criterion.name: detached loss, plus the criterion's own stats}.
            others: {"perm": (B, num_spk) identity permutation}.
        """
        if len(ref) != len(inf):
            raise ValueError(f"dp_fixed_order: {len(ref)} references but {len(inf)} estimates")
        num_spk = len(ref)
        others = others or {}
        weights = self._per_source(others.get(DP_WEIGHT_KEY), num_spk)
        if self.reference == "teacher" and others.get(TEACHER_REFERENCE_KEY) is not None:
            if num_spk != 1:
                raise ValueError(f"dp_fixed_order: reference 'teacher' has one output, not {num_spk}")
            ref = [others[TEACHER_REFERENCE_KEY]]

        loss = 0.0
        stats = defaultdict(list)
        for r, i, w in zip(ref, inf, weights):
            loss = loss + self._source_loss(r, i, w).mean() / num_spk
            for k, v in getattr(self.criterion, "stats", {}).items():
                stats[k].append(v)

        for k, v in stats.items():
            stats[k] = torch.stack(v, dim=1).mean()
        stats[self.criterion.name] = loss.detach()

        perm = torch.arange(num_spk).unsqueeze(0).repeat(ref[0].size(0), 1)
        return loss.mean(), dict(stats), {"perm": perm}

    @staticmethod
    def _per_source(weights: Weights, num_spk: int) -> List[Optional[torch.Tensor]]:
        if weights is None or isinstance(weights, torch.Tensor):
            return [weights] * num_spk
        if len(weights) != num_spk:
            raise ValueError(
                f"dp_fixed_order: others['{DP_WEIGHT_KEY}'] holds {len(weights)} weight "
                f"tensors for {num_spk} sources"
            )
        return list(weights)

    def _source_loss(
        self, ref: torch.Tensor, inf: torch.Tensor, weight: Optional[torch.Tensor]
    ) -> torch.Tensor:
        """(B,) loss of one source, DP-weighted when ``weight`` is given."""
        if weight is None:
            return self.criterion(ref, inf)
        weight = weight.detach()
        if weight.dim() == 1:
            if weight.size(0) != ref.size(0):
                raise ValueError(
                    f"dp_fixed_order: per-example weights of shape {tuple(weight.shape)} "
                    f"for a batch of {ref.size(0)}"
                )
            return weight * self.criterion(ref, inf)
        if weight.dim() == 2:
            segmental = getattr(self.criterion, "segmental", False)
            if not segmental or not hasattr(self.criterion, "framewise"):
                raise ValueError(
                    f"dp_fixed_order: per-frame others['{DP_WEIGHT_KEY}'] needs a segmental "
                    f"criterion (pse_distance with segmental: true), but criterion "
                    f"'{self.criterion.name}' is not"
                )
            return weighted_frame_mean(self.criterion.framewise(ref, inf), weight)
        raise ValueError(
            f"dp_fixed_order: others['{DP_WEIGHT_KEY}'] must be (B,) or (B, F), got shape "
            f"{tuple(weight.shape)}"
        )
