"""Several teachers' soft targets mixed into one (multi-teacher KD): the teachers' weights per example, and the KD
loss against the mixture."""

from __future__ import annotations

import torch
import torch.nn.functional as F

TEACHER_WEIGHTINGS = ("mean", "fixed", "confidence")


def teacher_weights(
    teacher_logits: torch.Tensor,
    labels: torch.Tensor | None,
    weighting: str = "mean",
    fixed: list[float] | None = None,
) -> torch.Tensor:
    """Each teacher's weight for each example, `(B, K)`, every row summing to 1.

    Args:
        teacher_logits (`torch.Tensor` of shape `(B, K, C)`): the K teachers' logits (`C = 1` for regression).
        labels (`torch.Tensor` of shape `(B,)`, *optional*): gold labels (class ids, or scores for regression);
            needed by `"confidence"`.
        weighting (`str`, *optional*, defaults to `"mean"`):
            - `"mean"`: `1 / K` (the average of the teachers' soft targets);
            - `"fixed"`: `fixed`, normalised to sum 1;
            - `"confidence"`: CA-MKD (Zhang et al., arXiv 2201.00007, as its code computes it):
              `w_k = (1 - exp(L_k) / sum_j exp(L_j)) / (K - 1)`, `L_k` teacher k's cross-entropy on the example's
              gold label (squared error for regression): teachers closer to the label weigh more.
        fixed (`list[float]`, *optional*): the weights of `"fixed"`, one per teacher, >= 0, not all 0.
    """
    batch, k = teacher_logits.shape[:2]
    if weighting == "mean":
        return teacher_logits.new_full((batch, k), 1.0 / k)
    if weighting == "fixed":
        if fixed is None or len(fixed) != k:
            raise ValueError(f"Fixed teacher weights need one weight per teacher ({k}), got {fixed}")
        w = torch.tensor(fixed, dtype=teacher_logits.dtype, device=teacher_logits.device)
        return (w / w.sum()).expand(batch, k)
    if weighting == "confidence":
        if labels is None:
            raise ValueError("Confidence-weighted teachers need the gold labels")
        if k < 2:
            raise ValueError("Confidence weighting compares teachers: it needs at least 2")
        logits = teacher_logits.float()
        if logits.shape[-1] == 1:
            losses = (logits.squeeze(-1) - labels.float()[:, None]) ** 2
        else:
            log_probs = F.log_softmax(logits, dim=-1)  # (B, K, C)
            losses = -log_probs.gather(-1, labels.long()[:, None, None].expand(batch, k, 1)).squeeze(-1)
        return (1 - losses.softmax(dim=1)) / (k - 1)
    raise ValueError(f"teacher weighting must be one of {', '.join(TEACHER_WEIGHTINGS)}, got {weighting!r}")


def multi_teacher_kd(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, weights: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """KD against the teachers' mixed soft targets, mean over rows.

    Classification: `T^2 * KL(sum_k w_k softmax(z_k / T) || softmax(z_S / T))`. Against fixed weights this has the
    gradient of `sum_k w_k T^2 KL(p_k || p_S)` (they differ by the teachers' entropies, constants), so it is also the
    weighted sum of per-teacher KD losses that multi-teacher papers write (CA-MKD's code further divides that sum by
    K; scale the weight for it). Regression (`C = 1`): MSE to `sum_k w_k z_k`.

    Args:
        student_logits (`torch.Tensor` of shape `(B, C)`), teacher_logits (`torch.Tensor` of shape `(B, K, C)`),
        weights (`torch.Tensor` of shape `(B, K)`, see [`teacher_weights`]), temperature (`float`, `T > 0`).
    """
    weights = weights.detach().to(torch.float32)
    teacher_logits = teacher_logits.detach().float()
    if student_logits.shape[-1] == 1:
        target = (weights[..., None] * teacher_logits).sum(1)
        return F.mse_loss(student_logits.float(), target)
    mixture = (weights[..., None] * F.softmax(teacher_logits / temperature, dim=-1)).sum(1)  # (B, C)
    log_student = F.log_softmax(student_logits.float() / temperature, dim=-1)
    kl = (mixture * (mixture.clamp_min(1e-12).log() - log_student)).sum(-1)
    return temperature**2 * kl.mean()
