"""Losses on the relations between the examples of a batch: similarity-preserving (SP), relational KD (RKD,
distance- and angle-wise), probabilistic knowledge transfer (PKT) and correlation congruence (CC).

Each compares one vector per example, `(B, H_S)` against `(B, H_T)`: the CNN papers' flattened or pooled
activations become the mean of a layer's token states over the real tokens ([`sentence_vectors`]; `(B, H)` inputs
are taken as they are). Only relations between examples are compared, so student and teacher widths may differ, and a
batch needs at least two examples: with fewer, every loss here is 0 (an epoch's last batch may have one row).
The teacher's relations are computed without gradient. They see the examples of one forward: a per-device
micro-batch, so unlike the token losses they change with gradient accumulation and with the number of devices (each
compares `per_device_train_batch_size` rows), as in the papers' implementations.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .padding import sentence_vectors
from .registry import register_match_loss


def _pair(student, teacher, mask) -> tuple[torch.Tensor, torch.Tensor]:
    return sentence_vectors(student, mask), sentence_vectors(teacher, mask).detach()


def _too_few(vectors: torch.Tensor) -> bool:
    return vectors.shape[0] < 2


def sp_loss(
    student_hidden: torch.Tensor, teacher_hidden: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Similarity-preserving KD (Tung and Mori, arXiv 1907.09682): `||G_S - G_T||_F^2 / B^2`, where `G = Q Q^T`
    is the batch Gram matrix of the examples' vectors `Q` with each row L2-normalised. Default weight 3000 (the
    paper's `gamma` for CIFAR-10). Unchanged when the batch is permuted (rows and columns move together).

    Args:
        student_hidden (`torch.Tensor` of shape `(B, L, H_S)` or `(B, H_S)`): student states.
        teacher_hidden (`torch.Tensor` of shape `(B, L, H_T)` or `(B, H_T)`): teacher states.
        mask (`torch.Tensor` of shape `(B, L)`, *optional*): 1 for real tokens (pooling).

    Returns:
        `torch.Tensor`: scalar loss.
    """
    student, teacher = _pair(student_hidden, teacher_hidden, mask)
    batch = student.shape[0]
    gram_student = F.normalize(student @ student.T, p=2, dim=1)
    gram_teacher = F.normalize(teacher @ teacher.T, p=2, dim=1)
    return (gram_student - gram_teacher).pow(2).sum() / batch**2


def _normalised_distances(vectors: torch.Tensor) -> torch.Tensor:
    """Pairwise Euclidean distances `(B, B)` divided by their mean over the pairs of distinct examples (`mu`)."""
    distances = torch.cdist(vectors, vectors, p=2)
    off_diagonal = ~torch.eye(vectors.shape[0], dtype=torch.bool, device=vectors.device)
    return distances / distances[off_diagonal].mean().clamp(min=1e-12)


def rkd_distance_loss(
    student_hidden: torch.Tensor, teacher_hidden: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """RKD distance-wise loss (Park et al., arXiv 1904.05068): the Huber loss (smooth L1, `delta = 1`) between the
    student's and the teacher's pairwise distances, each divided by its mean over the pairs of distinct examples.
    Averaged over all `B^2` ordered pairs (the authors' code; the paper sums over the pairs), so the weight does not
    depend on the batch size. Unchanged when either side's vectors are all scaled by a constant. Default weight 25
    (the paper's `lambda_D` for classification).

    Args:
        student_hidden (`torch.Tensor` of shape `(B, L, H_S)` or `(B, H_S)`): student states.
        teacher_hidden (`torch.Tensor` of shape `(B, L, H_T)` or `(B, H_T)`): teacher states.
        mask (`torch.Tensor` of shape `(B, L)`, *optional*): 1 for real tokens (pooling).

    Returns:
        `torch.Tensor`: scalar loss.
    """
    student, teacher = _pair(student_hidden, teacher_hidden, mask)
    if _too_few(student):
        return student.sum() * 0.0
    return F.smooth_l1_loss(_normalised_distances(student), _normalised_distances(teacher))


def _angles(vectors: torch.Tensor) -> torch.Tensor:
    """`(B, B, B)`: entry `(j, i, k)` is the cosine of the angle at `t_j` between `t_i - t_j` and `t_k - t_j`."""
    directions = F.normalize(vectors[None, :, :] - vectors[:, None, :], p=2, dim=2)  # (j, i): t_i - t_j
    return directions @ directions.transpose(1, 2)


def rkd_angle_loss(
    student_hidden: torch.Tensor, teacher_hidden: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """RKD angle-wise loss (Park et al., arXiv 1904.05068): the Huber loss between the cosines of the angles that
    every triplet of examples forms (`cos angle(t_i, t_j, t_k) = <e_ij, e_kj>` with `e_ij` the unit vector from
    `t_j` to `t_i`), averaged over all `B^3` triplets (the authors' code; the paper sums). Default weight 50 (the
    paper's `lambda_A` for classification).

    Args:
        student_hidden (`torch.Tensor` of shape `(B, L, H_S)` or `(B, H_S)`): student states.
        teacher_hidden (`torch.Tensor` of shape `(B, L, H_T)` or `(B, H_T)`): teacher states.
        mask (`torch.Tensor` of shape `(B, L)`, *optional*): 1 for real tokens (pooling).

    Returns:
        `torch.Tensor`: scalar loss.
    """
    student, teacher = _pair(student_hidden, teacher_hidden, mask)
    if _too_few(student):
        return student.sum() * 0.0
    return F.smooth_l1_loss(_angles(student), _angles(teacher))


def rkd_loss(
    student_hidden: torch.Tensor, teacher_hidden: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """RKD with both terms in the paper's 1 : 2 ratio: `rkd_distance + 2 * rkd_angle` (default weight 25, i.e. the
    paper's `lambda_D = 25`, `lambda_A = 50`)."""
    return rkd_distance_loss(student_hidden, teacher_hidden, mask) + 2 * rkd_angle_loss(
        student_hidden, teacher_hidden, mask
    )


def _cosine_conditionals(vectors: torch.Tensor, eps: float) -> torch.Tensor:
    """PKT's conditional probabilities: the cosine kernel `(cos(x_i, x_j) + 1) / 2`, each row divided by its sum."""
    unit = vectors / (vectors.norm(p=2, dim=1, keepdim=True) + eps)
    kernel = (unit @ unit.T + 1.0) / 2.0
    return kernel / kernel.sum(dim=1, keepdim=True)


def pkt_loss(
    student_hidden: torch.Tensor, teacher_hidden: torch.Tensor, mask: torch.Tensor | None = None, eps: float = 1e-7
) -> torch.Tensor:
    """Probabilistic knowledge transfer (Passalis and Tefas, arXiv 1803.10837): the examples' conditional
    probabilities under a cosine-similarity kernel, `p_{j|i} = K(x_i, x_j) / sum_k K(x_i, x_k)` with
    `K = (cos + 1) / 2`, and `KL(P_T || P_S) = p_T log(p_T / p_S)` over the pairs. As in the authors' code the
    diagonal `i = j` is included and the divergence is the mean over the `B^2` pairs (the paper sums); the default
    weight 30000 is the CRD benchmark's for PKT. Unchanged when the batch is permuted.

    Args:
        student_hidden (`torch.Tensor` of shape `(B, L, H_S)` or `(B, H_S)`): student states.
        teacher_hidden (`torch.Tensor` of shape `(B, L, H_T)` or `(B, H_T)`): teacher states.
        mask (`torch.Tensor` of shape `(B, L)`, *optional*): 1 for real tokens (pooling).
        eps (`float`, *optional*, defaults to 1e-7): the authors' guard in the norms and the logarithm.

    Returns:
        `torch.Tensor`: scalar loss.
    """
    student, teacher = _pair(student_hidden, teacher_hidden, mask)
    p_student = _cosine_conditionals(student, eps)
    p_teacher = _cosine_conditionals(teacher, eps)
    return (p_teacher * torch.log((p_teacher + eps) / (p_student + eps))).mean()


def cc_kernel(vectors: torch.Tensor, gamma: float = 0.4, order: int = 2) -> torch.Tensor:
    """CC's correlation matrix `(B, B)`: the Gaussian RBF kernel `exp(-2 gamma) exp(2 gamma x_i . x_j)` of the
    L2-normalised vectors (`||x_i - x_j||^2 = 2 - 2 x_i . x_j`), its second exponential replaced by the Taylor
    series up to `order`: `sum_p exp(-2 gamma) (2 gamma)^p / p! (x_i . x_j)^p`."""
    unit = F.normalize(vectors, p=2, dim=1)
    similarity = unit @ unit.T
    return sum(
        math.exp(-2 * gamma) * (2 * gamma) ** p / math.factorial(p) * similarity.pow(p) for p in range(order + 1)
    )


def cc_loss(
    student_hidden: torch.Tensor,
    teacher_hidden: torch.Tensor,
    mask: torch.Tensor | None = None,
    gamma: float = 0.4,
    order: int = 2,
) -> torch.Tensor:
    """Correlation congruence (Peng et al., arXiv 1904.01802): `||Phi(F_T) - Phi(F_S)||_F^2 / B^2` between the
    correlation matrices of [`cc_kernel`] (the paper's Gaussian RBF with its Taylor approximation, `gamma = 0.4`,
    order `P = 2`). The paper samples class-balanced batches for it (`FeatureDistillationConfig`'s
    `class_balanced_batches`) and puts it beside the instance-level KD. Default weight 0.02 (the CRD benchmark's).

    Args:
        student_hidden (`torch.Tensor` of shape `(B, L, H_S)` or `(B, H_S)`): student states.
        teacher_hidden (`torch.Tensor` of shape `(B, L, H_T)` or `(B, H_T)`): teacher states.
        mask (`torch.Tensor` of shape `(B, L)`, *optional*): 1 for real tokens (pooling).
        gamma (`float`, *optional*, defaults to 0.4): the kernel's `gamma`.
        order (`int`, *optional*, defaults to 2): the Taylor order `P`.

    Returns:
        `torch.Tensor`: scalar loss.
    """
    student, teacher = _pair(student_hidden, teacher_hidden, mask)
    batch = student.shape[0]
    return (cc_kernel(student, gamma, order) - cc_kernel(teacher, gamma, order)).pow(2).sum() / batch**2


_RELATIONAL = {
    "sp": (sp_loss, 3000.0, "arXiv 1907.09682"),
    "rkd": (rkd_loss, 25.0, "arXiv 1904.05068"),
    "rkd_distance": (rkd_distance_loss, 25.0, "arXiv 1904.05068"),
    "rkd_angle": (rkd_angle_loss, 50.0, "arXiv 1904.05068"),
    "pkt": (pkt_loss, 30000.0, "arXiv 1803.10837"),
    "cc": (cc_loss, 0.02, "arXiv 1904.01802"),
}
for _name, (_fn, _weight, _paper) in _RELATIONAL.items():
    register_match_loss(_name, "hidden", _fn, width="any", relational=True, weight=_weight, paper=_paper)
