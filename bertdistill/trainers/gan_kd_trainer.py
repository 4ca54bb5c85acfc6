"""`GANKDTrainer`: logit distillation plus an adversarial loss against a discriminator of teacher vs student."""

from __future__ import annotations

from typing import Any

from torch import nn
from transformers import PreTrainedModel

from ..adversarial import Discriminator, discriminator_loss, generator_loss
from ..modeling import LossTerm
from .distillation_trainer import DistillationTrainer
from .gan_kd_config import GANKDConfig


class GANKDTrainer(DistillationTrainer):
    """GAN-KD (Xu et al. 2017): the student, as the generator, learns the labels, the teacher's soft targets and to
    fool a discriminator (in the wrapped model's extras: trained in the same steps, checkpointed, DDP-synchronised)
    that tells the teacher's outputs from the student's. Logs `loss_ce`, `loss_kd`, `loss_adv` and `loss_disc`.

    Args:
        model (`PreTrainedModel`): the student.
        teacher_model (`PreTrainedModel`): the fine-tuned teacher.
        args (`GANKDConfig`): training and loss configuration.
    """

    method_name = "gan_kd"
    config_class = GANKDConfig

    def build_extras(self, student: PreTrainedModel, teacher: PreTrainedModel) -> nn.ModuleDict:
        args = self.args
        labels = student.config.num_labels
        width = labels if args.adv_feature == "logits" else teacher.config.hidden_size
        condition = (labels if labels > 1 else 1) if args.disc_conditional else 0
        extras = {"discriminator": Discriminator(width, condition, args.disc_hidden_size, args.disc_spectral_norm)}
        if args.adv_feature == "cls" and student.config.hidden_size != teacher.config.hidden_size:
            extras["adv_projection"] = nn.Linear(student.config.hidden_size, teacher.config.hidden_size)
        return nn.ModuleDict(extras)

    def build_loss_terms(self, student: PreTrainedModel, teacher: PreTrainedModel) -> list[LossTerm]:
        args = self.args
        hidden = args.adv_feature == "cls"

        def judged(s, t, extras):
            if not hidden:
                return s.logits, t.logits
            student_cls = s.hidden_states[-1][:, 0]
            if "adv_projection" in extras:
                student_cls = extras["adv_projection"](student_cls)
            return student_cls, t.hidden_states[-1][:, 0]

        def condition(batch):
            return batch["labels"] if args.disc_conditional else None

        def adv(s, t, batch, extras):
            fake, _ = judged(s, t, extras)
            return generator_loss(extras["discriminator"], fake, condition(batch))

        def disc(s, t, batch, extras):
            fake, real = judged(s, t, extras)
            return discriminator_loss(extras["discriminator"], real, fake, condition(batch), args.disc_real_target)

        needs = {"needs_labels": args.disc_conditional, "needs_hidden_states": hidden}
        if hidden:
            needs["teacher_hidden_layers"] = (teacher.config.num_hidden_layers,)
        return [
            *super().build_loss_terms(student, teacher),
            LossTerm("adv", args.adv_weight, adv, **needs),
            LossTerm("disc", 1.0, disc, **needs),
        ]

    def hyperparameters(self) -> dict[str, Any]:
        args = self.args
        return {
            **super().hyperparameters(),
            "adv_feature": args.adv_feature,
            "adv_weight": args.adv_weight,
            "discriminator": f"MLP {args.disc_hidden_size}x2, spectral norm {args.disc_spectral_norm}, "
            f"label-conditioned {args.disc_conditional}, teacher target {args.disc_real_target}",
        }
