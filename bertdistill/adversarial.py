"""The discriminator of adversarial distillation (GAN-KD, Xu et al., arXiv 1709.00513) and its two losses.

The student plays the generator: its outputs (logits, or its final [CLS] vector) should be indistinguishable from the
teacher's. The discriminator is a small MLP, conditioned on the gold label (the paper's conditional adversarial
network: the one-hot label is concatenated to its input; for regression the score itself), with two standard
stabilisers: spectral normalisation of its linear layers (Miyato et al. 2018) and one-sided label smoothing of the
"teacher" target (Salimans et al. 2016); the student gets the non-saturating generator loss. It lives in the trained
model's extras (one optimizer, DDP), and both players update in the same step (simultaneous gradient descent): the
discriminator's loss reads the student's outputs detached, the student's adversarial loss reads the discriminator with
its weights detached, so each loss trains one player only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torch.nn.utils.parametrizations import spectral_norm


class Discriminator(nn.Module):
    """MLP `[features ; condition] -> hidden -> hidden -> 1` (a logit: "this came from the teacher").

    Args:
        input_size (`int`): width of what is judged (the number of labels, or the hidden size).
        condition_size (`int`): width of the label condition (the number of classes; 1 for regression; 0: none).
        hidden_size (`int`, *optional*, defaults to 64), spectral (`bool`, *optional*, defaults to `True`).
    """

    def __init__(self, input_size: int, condition_size: int, hidden_size: int = 64, spectral: bool = True):
        super().__init__()
        norm = spectral_norm if spectral else (lambda layer: layer)
        self.condition_size = condition_size
        self.net = nn.Sequential(
            norm(nn.Linear(input_size + condition_size, hidden_size)),
            nn.LeakyReLU(0.2),
            norm(nn.Linear(hidden_size, hidden_size)),
            nn.LeakyReLU(0.2),
            norm(nn.Linear(hidden_size, 1)),
        )

    def condition(self, labels: torch.Tensor | None, batch: int, device) -> torch.Tensor:
        if self.condition_size == 0:
            return torch.zeros(batch, 0, device=device)
        if labels is None:
            raise ValueError("The label-conditioned discriminator needs the gold labels")
        if self.condition_size == 1:
            return labels.float().reshape(batch, 1)
        return F.one_hot(labels.long(), self.condition_size).float()

    def forward(self, features: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        cond = self.condition(labels, features.shape[0], features.device)
        return self.net(torch.cat([features.float(), cond], dim=-1)).squeeze(-1)


def discriminator_loss(
    disc: Discriminator, teacher: torch.Tensor, student: torch.Tensor, labels=None, real_target: float = 0.9
) -> torch.Tensor:
    """`BCE(D(teacher), real_target) + BCE(D(student), 0)`, the student's outputs detached (trains D only)."""
    real = disc(teacher.detach(), labels)
    fake = disc(student.detach(), labels)
    return F.binary_cross_entropy_with_logits(real, torch.full_like(real, real_target)) + (
        F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))
    )


def generator_loss(disc: Discriminator, student: torch.Tensor, labels=None) -> torch.Tensor:
    """Non-saturating `BCE(D(student), 1)` through a copy of D's weights that takes no gradient (trains the student
    only)."""
    params = {name: p.detach() for name, p in disc.named_parameters()}
    buffers = dict(disc.named_buffers())
    logits = functional_call(disc, {**params, **buffers}, (student, labels))
    return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
