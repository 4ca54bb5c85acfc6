"""`TinyBertTrainer`: TinyBERT's intermediate-layer or prediction-layer task distillation, narrow students included."""

from __future__ import annotations

from typing import Any

from transformers import PreTrainedModel

from ..layer_maps import LayerMatch, describe, resolve_layer_map
from ..layer_matching import check_matches, layer_match_term
from ..modeling import LossTerm
from .distillation_trainer import DistillationTrainer
from .tinybert_config import STAGES, TinyBertConfig


def tinybert_matches(spec: str, teacher: PreTrainedModel, student: PreTrainedModel) -> list[LayerMatch]:
    """TinyBERT's matches from a layer map: the embeddings (0 -> 0) unless the map has a match for student layer 0,
    the map's hidden-state matches, and an attention match for every mapped transformer layer unless the map lists
    attention matches itself (then exactly those)."""
    matches = resolve_layer_map(spec, teacher.config.num_hidden_layers, student.config.num_hidden_layers)
    hidden = [m for m in matches if m.feature == "hidden"]
    attention = [m for m in matches if m.feature == "attention"]
    if not attention:
        attention = [LayerMatch(m.teacher_layer, m.student_layer, feature="attention")
                     for m in hidden if m.student_layer > 0 and m.teacher_layer > 0]  # fmt: skip
    if not any(m.student_layer == 0 for m in hidden):
        hidden = [LayerMatch(0, 0), *hidden]
    return [*hidden, *attention]


class TinyBertTrainer(DistillationTrainer):
    """TinyBERT (Jiao et al. 2020), one stage of task distillation.

    Intermediate stage: embedding, hidden-state and attention losses through learnable projections (kept in the
    trained model, so they are optimised, checkpointed and synchronised by DDP), logged as `loss_emb`, `loss_hidden`
    and `loss_attn`. Prediction stage: soft cross-entropy on the logits (`loss_pred`) and optionally the task loss.
    Attention scores are the pre-softmax `Q K^T / sqrt(d)` recorded by `bertdistill.attention` in the mapped layers
    only; the other layers keep SDPA, and the prediction stage records none.

    Args:
        model (`PreTrainedModel`): the student; narrower than the teacher is fine, but with as many attention heads
            when the attention loss is on.
        teacher_model (`PreTrainedModel`): the fine-tuned teacher.
        args (`TinyBertConfig`): training and loss configuration.
    """

    method_name = "tinybert"
    config_class = TinyBertConfig

    def build_loss_terms(self, student: PreTrainedModel, teacher: PreTrainedModel) -> list[LossTerm]:
        args = self.args
        self.check_one_stage(args.stage, STAGES)
        if args.stage == "prediction":
            regression = student.config.num_labels == 1
            return [
                self.task_loss_term(args.alpha_ce),
                self.prediction_loss_term(args.alpha_kd, args.temperature, regression, args.regression_target),
            ]

        matches = tinybert_matches(args.layer_map, teacher, student)
        losses = {"hidden": "mse", "attention": args.attention_loss}
        groups = {
            "emb": (args.alpha_emb, [m for m in matches if m.feature == "hidden" and m.student_layer == 0]),
            "hidden": (args.alpha_hidden, [m for m in matches if m.feature == "hidden" and m.student_layer > 0]),
            "attn": (args.alpha_attn, [m for m in matches if m.feature == "attention"]),
        }
        # Matches whose term has weight 0 are not computed, so they need no projection or recorded scores.
        self.layer_map = [m for weight, group in groups.values() if weight for m in group]
        self.default_losses = losses
        check_matches(self.layer_map, losses, student.config, teacher.config, "TinyBERT",
                      args.per_device_train_batch_size)  # fmt: skip
        return [
            layer_match_term(name, weight, group, losses, shared_projection=args.shared_projection)
            for name, (weight, group) in groups.items()
            if weight and group
        ]

    def shared_projection(self) -> bool:
        return self.args.shared_projection

    def hyperparameters(self) -> dict[str, Any]:
        args = self.args
        if args.stage == "prediction":
            return {"stage": "prediction", "alpha_kd": args.alpha_kd, "alpha_ce": args.alpha_ce,
                    "temperature": args.temperature, "regression_target": args.regression_target}  # fmt: skip
        return {
            "stage": "intermediate",
            "layer_map": f"{args.layer_map} ({describe(self.layer_map)}, student<-teacher)",
            "alpha_emb": args.alpha_emb,
            "alpha_hidden": args.alpha_hidden,
            "alpha_attn": args.alpha_attn,
            "attention_loss": args.attention_loss,
            "shared_projection": args.shared_projection,
        }
