"""Losses between hidden states of matched layers: TinyBERT's MSE, DistilBERT's cosine, Patient-KD's normalised
[CLS] distance, FitNet hints, neuron selectivity transfer (NST) and the flow of solution procedure (FSP).

Shapes: `B` batch, `L` tokens, `H` hidden size (`H_S` student, `H_T` teacher). Token losses follow the padding policy
of `bertdistill.losses.padding`. The CNN papers' "channels" are hidden units here and their "positions" tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .padding import sequence_mean, token_counts, zero_padding
from .registry import register_loss, register_match_loss


@register_loss("pkd")
def pkd_hidden_distance(student_hidden: torch.Tensor, teacher_hidden: torch.Tensor) -> torch.Tensor:
    """Patient-KD's per-layer term (Sun et al. 2019): `|| h_S / ||h_S||_2 - h_T / ||h_T||_2 ||_2^2`.

    Args:
        student_hidden (`torch.Tensor` of shape `(B, H)`): student [CLS] vectors of one layer.
        teacher_hidden (`torch.Tensor` of shape `(B, H)`): teacher [CLS] vectors of the matched layer.

    Returns:
        `torch.Tensor` of shape `(B,)`: one distance per example; how examples and layers are combined (sum or
        mean) is the caller's choice.
    """
    student = F.normalize(student_hidden.float(), p=2, dim=-1)
    teacher = F.normalize(teacher_hidden.float(), p=2, dim=-1)
    return (student - teacher).pow(2).sum(dim=-1)


@register_loss("cosine")
def cosine_embedding_loss(
    student_hidden: torch.Tensor, teacher_hidden: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """DistilBERT's cosine-embedding loss with target 1: `1 - cos(h_S, h_T)` per token, averaged by the padding
    policy (each sequence's real tokens, then the sequences). The authors' code averages over all real tokens of a
    batch at once, which weights long sequences more and changes with how a batch is split; with sequences of equal
    length the two agree.

    Args:
        student_hidden (`torch.Tensor` of shape `(B, L, H)`): student hidden states.
        teacher_hidden (`torch.Tensor` of shape `(B, L, H)`): teacher hidden states, same width.
        mask (`torch.Tensor` of shape `(B, L)`, *optional*): 1 for real tokens, 0 for padding.

    Returns:
        `torch.Tensor`: scalar loss.
    """
    if student_hidden.shape[-1] != teacher_hidden.shape[-1]:
        raise ValueError(
            f"Cosine loss needs equal widths (student {student_hidden.shape[-1]}, teacher {teacher_hidden.shape[-1]})"
        )
    cosine = F.cosine_similarity(student_hidden.float(), teacher_hidden.float(), dim=-1)
    return sequence_mean(1 - cosine, mask)


@register_loss("hidden_mse")
def hidden_mse(
    student_hidden: torch.Tensor, teacher_hidden: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """TinyBERT's embedding and hidden-state loss `MSE(H_S W, H_T)`: the caller applies the projection `W`.

    Args:
        student_hidden (`torch.Tensor` of shape `(B, L, H_T)`): projected student states.
        teacher_hidden (`torch.Tensor` of shape `(B, L, H_T)`): teacher states.
        mask (`torch.Tensor` of shape `(B, L)`, *optional*): 1 for real tokens. Given, the padding policy applies:
            each sequence's squared error is averaged over its real tokens and the hidden size, then over the batch.
            TinyBERT's code pads every batch to 128 tokens and averages over all of them, padding included; with
            dynamic padding that mean would change with each batch's padding.

    Returns:
        `torch.Tensor`: scalar; without a mask, the mean over every element.
    """
    squared = (student_hidden.float() - teacher_hidden.float()).pow(2).mean(dim=-1)
    return sequence_mean(squared, mask)


@register_loss("pkd_mse")
def pkd_cls_mse(
    student_hidden: torch.Tensor, teacher_hidden: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Patient-KD's loss as the authors' code computes it: `F.mse_loss` between the L2-normalised [CLS] vectors, the
    mean over the examples and the hidden size (their `patience_loss` stacks the layers and averages over them too).
    The paper's `|| . ||_2^2` is the hidden size times this (see [`pkd_hidden_distance`]).

    Args:
        student_hidden (`torch.Tensor` of shape `(B, L, H)` or `(B, H)`): student states ([CLS] is token 0).
        teacher_hidden (`torch.Tensor` of the same shape): teacher states of the matched layer.
        mask: unused ([CLS] is never padding); accepted for the match-loss signature.

    Returns:
        `torch.Tensor`: scalar loss.
    """
    if student_hidden.dim() == 3:
        student_hidden, teacher_hidden = student_hidden[:, 0], teacher_hidden[:, 0]
    student = F.normalize(student_hidden.float(), p=2, dim=-1)
    teacher = F.normalize(teacher_hidden.float(), p=2, dim=-1)
    return F.mse_loss(student, teacher)


def fitnet_hint_loss(
    student_hidden: torch.Tensor, teacher_hidden: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """FitNet hint loss (Romero et al., arXiv 1412.6550): `MSE(r(h_S), h_T)` between the regressor's output on the
    student's guided layer and the teacher's hint layer; the caller applies the regressor `r` (a learned linear map
    to the teacher's width, the transformer counterpart of the paper's convolutional regressor).

    The paper's `1/2 ||h_T - r(h_S)||^2` sums over the hint; this is the per-element mean (the reference code of the
    CRD benchmark, whose weight 100 is the default here), following the padding policy. The paper trains the student
    up to the guided layer with this loss alone first (the hint stage), then the whole student by KD: the
    `"pretrain": "student"` stage of `FeatureDistillationTrainer`.

    Args:
        student_hidden (`torch.Tensor` of shape `(B, L, H_T)`): regressed student states.
        teacher_hidden (`torch.Tensor` of shape `(B, L, H_T)`): teacher states of the hint layer.
        mask (`torch.Tensor` of shape `(B, L)`, *optional*): 1 for real tokens.

    Returns:
        `torch.Tensor`: scalar loss.
    """
    return hidden_mse(student_hidden, teacher_hidden, mask)


def _unit_neuron_maps(states: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """`(B, H, L)`: each hidden unit's responses over the real tokens, L2-normalised (padding zero)."""
    return F.normalize(zero_padding(states, mask).transpose(1, 2), p=2, dim=-1)


def nst_loss(
    student_hidden: torch.Tensor, teacher_hidden: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Neuron selectivity transfer (Huang and Wang, arXiv 1707.01219): squared MMD with the polynomial kernel
    `k(x, y) = (x . y)^2` (d = 2, c = 0) between the student's and the teacher's neurons, each neuron being its
    L2-normalised responses over the sequence's tokens (the paper's spatial positions):

    `MMD^2 = mean_ij k(s_i, s_j) + mean_ij k(t_i, t_j) - 2 mean_ij k(s_i, t_j)` per sequence, mean over the batch.

    Padded tokens are zero in every neuron's vector, so they change nothing. The widths may differ (the neurons are
    two sets). Default weight 50 (the CRD benchmark's for NST; the paper tunes it per task).

    Args:
        student_hidden (`torch.Tensor` of shape `(B, L, H_S)`): student states.
        teacher_hidden (`torch.Tensor` of shape `(B, L, H_T)`): teacher states.
        mask (`torch.Tensor` of shape `(B, L)`, *optional*): 1 for real tokens.

    Returns:
        `torch.Tensor`: scalar loss.
    """
    student = _unit_neuron_maps(student_hidden, mask)
    teacher = _unit_neuron_maps(teacher_hidden, mask)

    def kernel_mean(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a @ b.transpose(1, 2)).pow(2).mean(dim=(1, 2))

    mmd = kernel_mean(student, student) + kernel_mean(teacher, teacher) - 2 * kernel_mean(student, teacher)
    return mmd.mean()


def fsp_matrix(start: torch.Tensor, end: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The FSP ("flow of solution procedure") matrix of Yim et al. (CVPR 2017) between two layers' token states:
    `G_ij = sum over real tokens of start_i * end_j / (number of real tokens)`, shape `(B, H_start, H_end)`."""
    return (
        zero_padding(start, mask).transpose(1, 2) @ zero_padding(end, mask) / token_counts(mask, start)[:, None, None]
    )


def fsp_loss(student_pair, teacher_pair, mask: torch.Tensor | None = None) -> torch.Tensor:
    """FSP loss (Yim et al., CVPR 2017): `(G_S - G_T)^2` between the student's and the teacher's flow matrices
    ([`fsp_matrix`]) of a layer pair, mean over the matrix entries and the batch.

    The paper's loss is the squared L2 norm (sum over the `H x H` entries, `lambda = 1`); this is the per-entry mean
    (the CRD benchmark's code, weight 50), `H^2` times smaller. The paper also trains the student with the FSP loss
    alone first and then on the task; here FSP is a term beside the task loss, as in that benchmark. A narrower
    student is projected to the teacher's width first (both layers through the match's projection).

    Args:
        student_pair (`tuple` of two `torch.Tensor` of shape `(B, L, H_T)`): the student's start and end states.
        teacher_pair (`tuple` of two `torch.Tensor` of shape `(B, L, H_T)`): the teacher's.
        mask (`torch.Tensor` of shape `(B, L)`, *optional*): 1 for real tokens.

    Returns:
        `torch.Tensor`: scalar loss.
    """
    student = fsp_matrix(*student_pair, mask)
    teacher = fsp_matrix(*teacher_pair, mask)
    if student.shape != teacher.shape:
        raise ValueError(
            f"FSP matrices differ in shape: student {tuple(student.shape)}, teacher {tuple(teacher.shape)}"
        )
    return (student - teacher).pow(2).mean()


register_match_loss("mse", "hidden", hidden_mse, paper="arXiv 1909.10351")
register_match_loss("cosine", "hidden", cosine_embedding_loss, paper="arXiv 1910.01108")
register_match_loss("pkd", "hidden", pkd_cls_mse, paper="arXiv 1908.09355")
register_match_loss("fitnet", "hidden", fitnet_hint_loss, width="project", pretrain="student", weight=100.0,
                    paper="arXiv 1412.6550")  # fmt: skip
register_match_loss("nst", "hidden", nst_loss, width="any", weight=50.0, paper="arXiv 1707.01219")
register_match_loss("fsp", "hidden", fsp_loss, layer_pair=True, weight=50.0, paper="Yim et al., CVPR 2017")
