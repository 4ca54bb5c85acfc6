"""`BYOTTrainer`: BYOT self-distillation into classifiers after the network's shallower layers, no teacher."""

from __future__ import annotations

from typing import Any

from transformers import BertForSequenceClassification, PreTrainedModel

from ..early_exit import MultiExitBertForSequenceClassification
from ..losses import hard_label_loss, logit_mse, soft_cross_entropy
from ..modeling import LossTerm
from .byot_config import BYOTConfig, parse_exit_layers
from .distillation_trainer import DistillationTrainer


class BYOTTrainer(DistillationTrainer):
    """BYOT (Zhang et al. 2019): a classifier after each layer of `args.exit_layers`; the shallow ones learn from the
    labels, from the deepest classifier's soft targets and from its pooled features. Logs `loss_ce` (the deepest
    exit), `loss_exits_ce`, `loss_exits_kd` and `loss_exits_hint` (each summed over the shallow exits).

    A stock `BertForSequenceClassification` given as `model` becomes a
    [`MultiExitBertForSequenceClassification`] (its head copied into every exit); `trainer.student` is then the
    multi-exit network, saved with its exits (it loads through the Auto classes). `truncate_at_exit` makes a
    fixed-depth stock checkpoint of one exit, and `exit_policy` on its config turns on early-exit inference.

    Args:
        model (`PreTrainedModel`): a BERT classifier, or a multi-exit one to continue.
        teacher_model: must be `None`.
        args (`BYOTConfig`): training and loss configuration.
    """

    method_name = "byot"
    config_class = BYOTConfig
    uses_teacher = False

    def __init__(self, model: PreTrainedModel, teacher_model: None = None, args: BYOTConfig | None = None, **kwargs):
        if isinstance(args, BYOTConfig) and isinstance(model, MultiExitBertForSequenceClassification):
            wanted = parse_exit_layers(args.exit_layers, model.config.num_hidden_layers)
            if wanted is not None and sorted({*wanted, model.config.num_hidden_layers}) != model.config.exit_layers:
                raise ValueError(
                    f"The model already has exits after layers {model.config.exit_layers}; exit_layers "
                    f"{args.exit_layers!r} asks for others: leave exit_layers unset to continue it"
                )
        if isinstance(args, BYOTConfig) and not isinstance(model, MultiExitBertForSequenceClassification):
            if not isinstance(model, BertForSequenceClassification):
                raise ValueError(
                    f"BYOT adds classifiers to a BERT classifier; got a {type(model).__name__} (only BERT-layout "
                    "encoders are supported)"
                )
            model = MultiExitBertForSequenceClassification.from_bert(
                model, parse_exit_layers(args.exit_layers, model.config.num_hidden_layers)
            )
        super().__init__(model, teacher_model, args, **kwargs)

    def build_loss_terms(self, student: PreTrainedModel, teacher: None) -> list[LossTerm]:
        args = self.args
        if len(student.config.exit_layers) < 2:
            raise ValueError(
                f"BYOT needs at least one exit below the last layer; exit_layers is {student.config.exit_layers}"
            )
        regression = student.config.num_labels == 1

        def deepest_ce(s, t, batch, extras):
            return hard_label_loss(s.logits, batch["labels"])

        def exits_ce(s, t, batch, extras):
            return sum(hard_label_loss(logits, batch["labels"]) for logits in s.exit_logits[:-1])

        def exits_kd(s, t, batch, extras):
            target = s.exit_logits[-1].detach()
            if regression:
                return sum(logit_mse(logits, target) for logits in s.exit_logits[:-1])
            return sum(soft_cross_entropy(logits, target, args.temperature) for logits in s.exit_logits[:-1])

        def exits_hint(s, t, batch, extras):
            target = s.exit_features[-1].detach()
            return sum(((f.float() - target.float()) ** 2).mean() for f in s.exit_features[:-1])

        return [
            LossTerm("ce", 1.0, deepest_ce, needs_labels=True, needs_teacher=False),
            LossTerm("exits_ce", 1 - args.byot_alpha, exits_ce, needs_labels=True, needs_teacher=False),
            LossTerm("exits_kd", args.byot_alpha, exits_kd, needs_teacher=False),
            LossTerm("exits_hint", args.byot_feature_weight, exits_hint, needs_teacher=False),
        ]

    def hyperparameters(self) -> dict[str, Any]:
        args = self.args
        return {
            "teacher": "none (the deepest exit teaches the shallow ones)",
            "exit_layers": ",".join(str(k) for k in self.student.config.exit_layers),
            "byot_alpha": args.byot_alpha,
            "temperature": args.temperature,
            "byot_feature_weight": args.byot_feature_weight,
        }
