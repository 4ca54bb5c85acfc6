"""`TinyBertTrainer`: TinyBERT's intermediate-layer or prediction-layer task distillation, narrow students included."""

from __future__ import annotations

from typing import Any

from torch import nn
from transformers import PreTrainedModel

from ..attention import record_attention_scores
from ..layer_maps import LayerMatch, describe, resolve_layer_map
from ..losses import attention_kl, attention_mse, hidden_mse, logit_mse, soft_cross_entropy
from ..modeling import LossTerm
from .distillation_trainer import DistillationTrainer
from .tinybert_config import STAGES, TinyBertConfig


def tinybert_matches(spec: str, teacher: PreTrainedModel, student: PreTrainedModel) -> list[LayerMatch]:
    """Hidden-state matches (embeddings 0 -> 0 first) and, for every mapped transformer layer, an attention match.

    A JSON map that already lists attention matches or the embedding match is taken as it is."""
    matches = resolve_layer_map(spec, teacher.config.num_hidden_layers, student.config.num_hidden_layers)
    if any(m.feature == "attention" for m in matches) or any(m.student_layer == 0 for m in matches):
        return matches
    attention = [LayerMatch(m.teacher_layer, m.student_layer, feature="attention") for m in matches]
    return [LayerMatch(0, 0), *matches, *attention]


def prediction_term(weight: float, temperature: float) -> LossTerm:
    """`pred`: soft cross-entropy between student and teacher logits at `temperature` (MSE for regression), the
    prediction-layer loss of TinyBERT and DynaBERT."""

    def pred(s, t, batch, extras):
        if s.logits.shape[-1] == 1:
            return logit_mse(s.logits, t.logits)
        return soft_cross_entropy(s.logits, t.logits, temperature)

    return LossTerm("pred", weight, pred)


class TinyBertTrainer(DistillationTrainer):
    """TinyBERT (Jiao et al. 2020), one stage of task distillation.

    Intermediate stage: embedding, hidden-state and attention losses through learnable projections (kept in the
    trained model, so they are optimised, checkpointed and synchronised by DDP), logged as `loss_emb`, `loss_hidden`
    and `loss_attn`. Prediction stage: soft cross-entropy on the logits (`loss_pred`) and optionally the task loss.
    Attention scores are the pre-softmax `Q K^T / sqrt(d)` recorded by `bertdistill.attention` in the mapped layers
    only; the other layers keep SDPA.

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
        if args.stage not in STAGES:
            raise ValueError(
                f"TinyBertTrainer runs one stage ({' or '.join(STAGES)}); for stage {args.stage!r} run the configs of "
                "args.split_stages() in turn, as distill_glue.py does"
            )
        if args.stage == "prediction":
            return [self.task_loss_term(args.alpha_ce), prediction_term(args.alpha_kd, args.temperature)]

        self.layer_map = matches = tinybert_matches(args.layer_map, teacher, student)
        hidden = [m for m in matches if m.feature == "hidden"]
        attention = [m for m in matches if m.feature == "attention"]
        embedding = [m for m in hidden if m.student_layer == 0]
        layers = [m for m in hidden if m.student_layer > 0]
        terms = []
        if embedding:
            terms.append(LossTerm("emb", args.alpha_emb, self._hidden_fn(embedding), needs_hidden_states=True))
        if layers:
            terms.append(LossTerm("hidden", args.alpha_hidden, self._hidden_fn(layers), needs_hidden_states=True))
        if attention and args.alpha_attn:
            if teacher.config.num_attention_heads != student.config.num_attention_heads:
                raise ValueError(
                    f"TinyBERT's attention loss compares heads one to one: the teacher has "
                    f"{teacher.config.num_attention_heads} heads, the student {student.config.num_attention_heads}. "
                    "Give the student as many heads (--student_num_attention_heads) or set --alpha_attn 0"
                )
            record_attention_scores(teacher, sorted({m.teacher_layer for m in attention}))
            record_attention_scores(student, sorted({m.student_layer for m in attention}))
            terms.append(LossTerm("attn", args.alpha_attn, self._attention_fn(attention), needs_attentions=True))
        return [term for term in terms if term.weight]

    def _projection_key(self, match: LayerMatch) -> str:
        return "proj" if self.args.shared_projection else f"proj_{match.student_layer}_{match.teacher_layer}"

    def _hidden_fn(self, matches: list[LayerMatch]):
        def loss(s, t, batch, extras):
            total = 0.0
            for m in matches:
                student_states = s.hidden_states[m.student_layer]
                key = self._projection_key(m)
                if key in extras:
                    student_states = extras[key](student_states)
                total = total + m.weight * hidden_mse(student_states, t.hidden_states[m.teacher_layer])
            return total

        return loss

    def _attention_fn(self, matches: list[LayerMatch]):
        teacher_index = {layer: i for i, layer in enumerate(sorted({m.teacher_layer for m in matches}))}
        student_index = {layer: i for i, layer in enumerate(sorted({m.student_layer for m in matches}))}
        kind = self.args.attention_loss

        def loss(s, t, batch, extras):
            total = 0.0
            for m in matches:
                scores_s = s.attentions[student_index[m.student_layer]]
                scores_t = t.attentions[teacher_index[m.teacher_layer]]
                if kind == "mse":
                    value = attention_mse(scores_s, scores_t)
                else:
                    value = attention_kl(scores_s, scores_t, batch["attention_mask"])
                total = total + m.weight * value
            return total

        return loss

    def build_extras(self, student: PreTrainedModel, teacher: PreTrainedModel) -> nn.ModuleDict:
        """Linear maps from the student's width to the teacher's, when they differ (or a match asks for one)."""
        if self.args.stage != "intermediate":
            return nn.ModuleDict()
        hidden = [m for m in self.layer_map if m.feature == "hidden"]
        narrow = student.config.hidden_size != teacher.config.hidden_size
        extras = nn.ModuleDict()
        for m in hidden:
            key = self._projection_key(m)
            if (narrow or m.proj) and key not in extras:
                extras[key] = nn.Linear(student.config.hidden_size, teacher.config.hidden_size)
        return extras

    def hyperparameters(self) -> dict[str, Any]:
        args = self.args
        if args.stage == "prediction":
            return {"stage": "prediction", "alpha_kd": args.alpha_kd, "alpha_ce": args.alpha_ce,
                    "temperature": args.temperature}  # fmt: skip
        return {
            "stage": "intermediate",
            "layer_map": f"{args.layer_map} ({describe(self.layer_map)}, student<-teacher)",
            "alpha_emb": args.alpha_emb,
            "alpha_hidden": args.alpha_hidden,
            "alpha_attn": args.alpha_attn,
            "attention_loss": args.attention_loss,
            "shared_projection": args.shared_projection,
        }
