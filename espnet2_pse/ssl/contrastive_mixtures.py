"""Contrastive Mixtures (CM): PseudoSE plus agreement terms across pairs of inputs.

methods.md, PART 1, 1.4(b). The batch's speech crops are paired ((0,1), (2,3), ...):
- positive pair: one pseudo-source s~ (from the first crop) under two different injections
  with independent SNRs; the outputs should agree: + lambda_p * D(y1, y2);
- negative pair: two different pseudo-sources s~1, s~2 under one shared injection noise at one
  SNR; the outputs should be as (dis)similar as their targets: + lambda_n * NegTerm, with
    sq : (D(y1, y2) - D(s~1, s~2))^2     (the published formulation)
    abs: |D(y1, y2) - D(s~1, s~2)|
    max: max(D(y1, y2), D(s~1, s~2))    (the authors' final code)
The signal term is the configured criterion on every member against its own pseudo-source,
i.e. mean over pairs of (D(y1, s~1) + D(y2, s~2)) / 2. D is that criterion's distance. With DP,
every D is the frame-weighted segmental distance: members use their own weights, positive
pairs w1 (= w2), negative pairs w1 * w2 in both D(y1, y2) and D(s~1, s~2).
"""

from typing import Dict, Optional

import torch

from espnet2_pse.losses.distances import weighted_frame_mean
from espnet2_pse.ssl.mixing import scale_batch
from espnet2_pse.ssl.on_the_fly import OnTheFlyObjective, length_mask

NEGATIVE_TERMS = ("sq", "abs", "max")


def negative_term(d_out: torch.Tensor, d_target: torch.Tensor, variant: str) -> torch.Tensor:
    """NegTerm per negative pair from D(y1, y2) and D(s~1, s~2); (P,), (P,) -> (P,)."""
    if variant == "sq":
        return (d_out - d_target).pow(2)
    if variant == "abs":
        return (d_out - d_target).abs()
    if variant == "max":
        return torch.maximum(d_out, d_target)
    raise ValueError(f"negative_term must be one of {NEGATIVE_TERMS}, got '{variant}'")


class ContrastiveMixtures(OnTheFlyObjective):
    """PseudoSE on pairs with positive/negative agreement terms.

    Args:
        lambda_positive: weight of D(y1, y2) on positive pairs (code default 1.0).
        lambda_negative: weight of NegTerm on negative pairs (code default 1.0).
        positive_ratio: fraction of pairs that are positive (0.5 in the paper).
        negative_term: "sq", "abs" or "max" (see the module docstring).
        **kwargs: mixing and DP options of :class:`OnTheFlyObjective`.
    """

    def __init__(
        self,
        lambda_positive: float = 1.0,
        lambda_negative: float = 1.0,
        positive_ratio: float = 0.5,
        negative_term: str = "max",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if negative_term not in NEGATIVE_TERMS:
            raise ValueError(f"negative_term must be one of {NEGATIVE_TERMS}, got '{negative_term}'")
        if not 0.0 <= positive_ratio <= 1.0:
            raise ValueError(f"positive_ratio must be in [0, 1], got {positive_ratio}")
        self.lambda_positive = float(lambda_positive)
        self.lambda_negative = float(lambda_negative)
        self.positive_ratio = float(positive_ratio)
        self.negative_term = negative_term

    def make_pairs(self, speech: torch.Tensor, mask: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Inputs and targets of P = B // 2 pairs from (B, T) speech crops.

        Returns a dict of (P, T) ``input1, input2, target1, target2`` and a (P,) bool
        ``positive``; the batch scaling is applied to all four signals together.
        """
        pairs = speech.shape[0] // 2
        if pairs == 0:
            raise ValueError("contrastive_mixtures needs a batch of at least 2 crops (pairs)")
        length, gen = speech.shape[1], self.generator
        first, second = speech[0 : 2 * pairs : 2], speech[1 : 2 * pairs : 2]
        mask1, mask2 = mask[0 : 2 * pairs : 2], mask[1 : 2 * pairs : 2]
        positive = torch.zeros(pairs, dtype=torch.bool)
        positive[torch.randperm(pairs, generator=gen)[: round(pairs * self.positive_ratio)]] = True
        positive = positive.to(speech.device)

        target1 = self.mixer.pseudo_source(first, gen) * mask1
        # Positive pairs share the first crop's pseudo-source (and its length).
        target2 = torch.where(positive[:, None], target1, self.mixer.pseudo_source(second, gen) * mask2)
        mask2 = torch.where(positive[:, None], mask1, mask2)

        noise1, snr1 = self.mixer.injection(pairs, length, gen)
        noise2, snr2 = self.mixer.injection(pairs, length, gen)
        # Negative pairs share one injection noise at one SNR.
        noise2 = torch.where(positive[:, None].cpu(), noise2, noise1)
        snr2 = torch.where(positive.cpu(), snr2, snr1)
        input1 = self.inject(target1, noise1, snr1, mask1)
        input2 = self.inject(target2, noise2, snr2, mask2)
        if self.batch_scaling:
            # One scalar for the whole batch: the max over both members of every pair.
            both = torch.cat([input1, input2])
            both, target1, target2 = scale_batch(both, target1, target2)
            input1, input2 = both[:pairs], both[pairs:]
        return dict(
            input1=input1, input2=input2, target1=target1, target2=target2, positive=positive,
            mask1=mask1, mask2=mask2,
        )

    def __call__(
        self,
        model,
        speech: torch.Tensor,
        speech_lengths: Optional[torch.Tensor],
        additional: Dict[str, torch.Tensor],
    ):
        batch, length = speech.shape
        p = self.make_pairs(speech, length_mask(speech_lengths, batch, length, speech))
        pairs = p["positive"].shape[0]
        targets = torch.cat([p["target1"], p["target2"]])
        lengths = torch.cat([p["mask1"], p["mask2"]]).sum(-1).long()
        weights = self.dp_weights(targets)
        signal_loss, stats, weight, enhanced = model.forward_supervised(
            torch.cat([p["input1"], p["input2"]]),
            lengths,
            targets,
            {k: torch.cat([v[: 2 * pairs : 2], v[1 : 2 * pairs : 2]]) for k, v in additional.items()},
            dp_weight=weights,
        )
        criterion = model.loss_wrappers[0].criterion
        out1, out2 = enhanced[:pairs], enhanced[pairs:]
        w1, w2 = (None, None) if weights is None else (weights[:pairs], weights[pairs:])
        positive = p["positive"]

        loss = signal_loss
        if positive.any():
            w_pos = None if w1 is None else w1[positive]
            d_pos = self.pair_distance(criterion, out1[positive], out2[positive], w_pos)
            stats["cm_positive"] = d_pos.mean().detach()
            loss = loss + self.lambda_positive * d_pos.mean()
        if (~positive).any():
            neg = ~positive
            w_neg = None if w1 is None else w1[neg] * w2[neg]
            d_out = self.pair_distance(criterion, out1[neg], out2[neg], w_neg)
            with torch.no_grad():
                d_target = self.pair_distance(criterion, p["target1"][neg], p["target2"][neg], w_neg)
            term = negative_term(d_out, d_target, self.negative_term)
            stats["cm_negative"] = term.mean().detach()
            loss = loss + self.lambda_negative * term.mean()
        stats["loss"] = loss.detach()
        return loss, stats, weight

    def pair_distance(self, criterion, est, ref, frame_weights):
        """D(est, ref) per pair; frame-weighted segmental distance when DP weights are given."""
        if frame_weights is None:
            return criterion(ref, est)
        return weighted_frame_mean(criterion.framewise(ref, est), frame_weights)
