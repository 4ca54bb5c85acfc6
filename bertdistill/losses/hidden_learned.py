"""Losses that learn a model of the teacher's features: variational information distillation (VID), factor transfer
(FT) and activation-boundary transfer (AB), each with the trainable parts it needs.

The parts are `nn.Module`s built by the registry's `build_parts(student_width, teacher_width)`; the trainers keep them
in the trained model's `extras`, so they are optimised, checkpointed, resumed and synchronised by DDP. Each works on
every token: the CNN papers' 1x1 convolutions become per-token linear layers. Shapes: `B` batch, `L` tokens, `H`
hidden size, `I` feed-forward size; padding policy as in `bertdistill.losses.padding`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .padding import sequence_mean, zero_padding
from .registry import register_match_loss


class VIDParts(nn.Module):
    """VID's heteroscedastic Gaussian: a regressor `mu(s)` (three per-token linear layers with ReLUs, as the paper's
    three 1x1 convolutions) and one variance per teacher dimension, `sigma_n^2 = softplus(alpha_n) + eps`,
    initialised to `init_variance` as in the authors' code."""

    def __init__(self, student_width: int, teacher_width: int, init_variance: float = 5.0, eps: float = 1e-5):
        super().__init__()
        self.regressor = nn.Sequential(
            nn.Linear(student_width, teacher_width),
            nn.ReLU(),
            nn.Linear(teacher_width, teacher_width),
            nn.ReLU(),
            nn.Linear(teacher_width, teacher_width),
        )
        self.eps = eps
        self.log_scale = nn.Parameter(torch.full((teacher_width,), math.log(math.expm1(init_variance - eps))))

    def variance(self) -> torch.Tensor:
        return F.softplus(self.log_scale) + self.eps


def vid_loss(
    student_hidden: torch.Tensor, teacher_hidden: torch.Tensor, mask: torch.Tensor | None, parts: VIDParts
) -> torch.Tensor:
    """Variational information distillation (Ahn et al., arXiv 1904.05835): the negative log-likelihood of the
    teacher's features under a Gaussian whose mean the student predicts, `sum_n log sigma_n + (t_n - mu_n(s))^2 /
    (2 sigma_n^2)` (the constant `log sqrt(2 pi)` left out), averaged over the dimensions, then by the padding policy
    over the tokens and the batch (the authors' code takes the mean over every element). Default weight 1 (the CRD
    benchmark's).

    Args:
        student_hidden (`torch.Tensor` of shape `(B, L, H_S)`): student states.
        teacher_hidden (`torch.Tensor` of shape `(B, L, H_T)`): teacher states.
        mask (`torch.Tensor` of shape `(B, L)` or `None`): 1 for real tokens.
        parts ([`VIDParts`]): the regressor and the variances.

    Returns:
        `torch.Tensor`: scalar loss.
    """
    mean = parts.regressor(student_hidden.float())
    variance = parts.variance()
    nll = 0.5 * ((mean - teacher_hidden.float()).pow(2) / variance + torch.log(variance))
    return sequence_mean(nll.mean(dim=-1), mask)


def _leaky_mlp(width_in: int, width_mid: int, width_out: int, last_activation: bool) -> nn.Sequential:
    layers = [nn.Linear(width_in, width_mid), nn.LeakyReLU(0.1), nn.Linear(width_mid, width_out)]
    return nn.Sequential(*layers, nn.LeakyReLU(0.1)) if last_activation else nn.Sequential(*layers)


class FTParts(nn.Module):
    """FT's paraphraser (an auto-encoder of the teacher's states whose code, `rate x H_T` wide, is the factor) and
    translator (student states -> a factor of the same width); two per-token layers each, leaky ReLUs as in the
    paper. `rate` is the paper's paraphrase rate `k` (0.5)."""

    def __init__(self, student_width: int, teacher_width: int, rate: float = 0.5):
        super().__init__()
        factor = max(1, round(rate * teacher_width))
        self.encoder = _leaky_mlp(teacher_width, teacher_width, factor, last_activation=True)
        self.decoder = _leaky_mlp(factor, teacher_width, teacher_width, last_activation=False)
        self.translator = _leaky_mlp(student_width, student_width, factor, last_activation=True)


def _unit_factors(factors: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """A sequence's factors `(B, L, F)` scaled to unit L2 norm over all its real tokens and factor units."""
    factors = zero_padding(factors, mask)
    return factors / factors.flatten(1).norm(p=2, dim=1).clamp(min=1e-12)[:, None, None]


def ft_loss(
    student_hidden: torch.Tensor, teacher_hidden: torch.Tensor, mask: torch.Tensor | None, parts: FTParts
) -> torch.Tensor:
    """Factor transfer (Kim et al., arXiv 1802.04977): the L1 distance between the L2-normalised factors of the
    student (translator) and the teacher (paraphraser's encoder, without gradient: the paraphraser is fixed while
    the student learns), `|F_S / ||F_S||_2 - F_T / ||F_T||_2|`, each sequence's factors normalised together, the
    difference averaged over the factor units and, by the padding policy, the tokens and the batch (the authors' code
    averages over every element). Default weight 200 (the CRD benchmark's).

    Args:
        student_hidden (`torch.Tensor` of shape `(B, L, H_S)`): student states.
        teacher_hidden (`torch.Tensor` of shape `(B, L, H_T)`): teacher states.
        mask (`torch.Tensor` of shape `(B, L)` or `None`): 1 for real tokens.
        parts ([`FTParts`]): the paraphraser and the translator.

    Returns:
        `torch.Tensor`: scalar loss.
    """
    with torch.no_grad():
        teacher = _unit_factors(parts.encoder(teacher_hidden.float()), mask)
    student = _unit_factors(parts.translator(student_hidden.float()), mask)
    return sequence_mean((student - teacher).abs().mean(dim=-1), mask)


def ft_reconstruction_loss(teacher_hidden: torch.Tensor, mask: torch.Tensor | None, parts: FTParts) -> torch.Tensor:
    """The paraphraser's training loss, the reconstruction MSE `||x - P(x)||^2` of the teacher's states, per
    element, padding policy (the paper's L2; the CRD benchmark's code uses L1)."""
    teacher = teacher_hidden.float().detach()
    reconstruction = parts.decoder(parts.encoder(teacher))
    return sequence_mean((reconstruction - teacher).pow(2).mean(dim=-1), mask)


def ab_loss(
    student_ffn: torch.Tensor,
    teacher_ffn: torch.Tensor,
    mask: torch.Tensor | None,
    parts: nn.Module,
    margin: float = 1.0,
) -> torch.Tensor:
    """Activation-boundary transfer (Heo et al., arXiv 1811.03233) on the feed-forward pre-activations (the input
    of GELU, whose boundary is 0 as ReLU's is): the connector `r` (a linear map to the teacher's FFN width; the
    paper's 1x1 convolution) maps the student's, and the squared hinge
    `rho(t) * max(0, m - r(s))^2 + (1 - rho(t)) * max(0, m + r(s))^2`, `rho(t) = 1[t > 0]`, pushes each neuron to the
    teacher's side of the boundary by the margin `m`. Per-element mean over the neurons, then the padding policy
    (the paper sums over the neurons). The paper uses this loss alone to initialise the student, then trains it on
    the task: `pretrain="student"`.

    Args:
        student_ffn (`torch.Tensor` of shape `(B, L, I_S)`): student FFN pre-activations.
        teacher_ffn (`torch.Tensor` of shape `(B, L, I_T)`): teacher FFN pre-activations.
        mask (`torch.Tensor` of shape `(B, L)` or `None`): 1 for real tokens.
        parts (`nn.Linear`): the connector.
        margin (`float`, *optional*, defaults to 1.0): the margin `m` (the authors' value).

    Returns:
        `torch.Tensor`: scalar loss.
    """
    source = parts(student_ffn.float())
    active = teacher_ffn.float() > 0
    loss = torch.where(active, F.relu(margin - source).pow(2), F.relu(margin + source).pow(2))
    return sequence_mean(loss.mean(dim=-1), mask)


register_match_loss("vid", "hidden", vid_loss, width="parts", build_parts=VIDParts, paper="arXiv 1904.05835")
register_match_loss("ft", "hidden", ft_loss, width="parts", build_parts=FTParts, pretrain="parts",
                    pretrain_fn=ft_reconstruction_loss, weight=200.0, paper="arXiv 1802.04977")  # fmt: skip
register_match_loss("ab", "ffn", ab_loss, width="parts", build_parts=nn.Linear, pretrain="student",
                    paper="arXiv 1811.03233")  # fmt: skip
