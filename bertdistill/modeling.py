"""The model the Trainer wraps: the student plus every trainable extra, with the whole distillation loss in `forward`.

Everything that receives gradients lives in this module and is used inside its `forward`, so DDP all-reduces it and
checkpoints carry it. The teacher never enters it: its outputs come in as an argument.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import safetensors.torch
import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.trainer_utils import load_sharded_checkpoint
from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME, ModelOutput

from .activations import recording_ffn_inputs

EXTRAS_WEIGHTS_NAME = "distillation_extras.safetensors"


@dataclass
class LossTerm:
    """One weighted term of the distillation loss.

    Args:
        name (`str`): logged as `loss_<name>`.
        weight (`float`): multiplier in the total loss; terms with weight 0 are not computed.
        fn (`Callable`): `fn(student_outputs, teacher_outputs, batch, extras) -> scalar tensor`, where `batch` holds
            the forward's inputs (`input_ids`, `attention_mask`, `token_type_ids`, `labels`) and `extras` is the
            model's `nn.ModuleDict` of trainable extras (projections).
        needs_hidden_states (`bool`, *optional*, defaults to `False`): ask both models for hidden states.
        needs_attentions (`bool`, *optional*, defaults to `False`): ask both models for attentions.
        needs_labels (`bool`, *optional*, defaults to `False`): the term reads the gold labels.
        needs_teacher (`bool`, *optional*, defaults to `True`): the term reads the teacher's outputs; when no active
            term does, the teacher is not run at all.
        teacher_hidden_layers (`tuple[int, ...]`, *optional*): the teacher hidden states the term reads (numbered as
            `output_hidden_states`); `None` with `needs_hidden_states`: any of them (e.g. DynaBERT, whose kept layers
            change with the sub-network). What a cache of teacher outputs has to keep.
        teacher_attention_layers (`tuple[int, ...]`, *optional*): the teacher layers (1-based) whose attention scores
            the term reads; the trainer records exactly the union of these (see `bertdistill.attention`).
        student_attention_layers (`tuple[int, ...]`, *optional*): the same for the student. Either being non-empty
            implies `needs_attentions`. In `fn`, `outputs.attentions` is then `{layer: scores}` for those layers.
        teacher_ffn_layers (`tuple[int, ...]`, *optional*): the teacher layers (1-based) whose FFN pre-activations
            the term reads (recorded by `bertdistill.activations`); in `fn`, `outputs.ffn` is `{layer: tensor}`.
        student_ffn_layers (`tuple[int, ...]`, *optional*): the same for the student.
    """

    name: str
    weight: float
    fn: Callable[[ModelOutput, ModelOutput | None, dict[str, torch.Tensor | None], nn.ModuleDict], torch.Tensor]
    needs_hidden_states: bool = False
    needs_attentions: bool = False
    needs_labels: bool = False
    needs_teacher: bool = True
    teacher_hidden_layers: tuple[int, ...] | None = None
    teacher_attention_layers: tuple[int, ...] = ()
    student_attention_layers: tuple[int, ...] = ()
    teacher_ffn_layers: tuple[int, ...] = ()
    student_ffn_layers: tuple[int, ...] = ()

    def __post_init__(self):
        if self.teacher_attention_layers or self.student_attention_layers:
            self.needs_attentions = True


def attentions_by_layer(outputs: ModelOutput | None, layers: tuple[int, ...]) -> None:
    """Replace `outputs.attentions`, the recorded layers' scores in layer order, by `{layer: scores}` (in place)."""
    if outputs is None or not layers or isinstance(outputs.attentions, dict):
        return
    attentions = outputs.attentions or ()
    if len(attentions) != len(layers):
        raise ValueError(
            f"Expected the attention scores of layers {list(layers)}, got {len(attentions)} tensors: the model does "
            "not record exactly those layers (bertdistill.attention.record_attention_scores)"
        )
    outputs.attentions = dict(zip(layers, attentions))


@dataclass
class DistillationOutput(ModelOutput):
    """Output of a training forward: the weighted total, the logits and each unweighted component."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    loss_components: dict[str, torch.Tensor] | None = None


class DistillationModel(nn.Module):
    """Student + trainable extras; `forward(..., teacher_outputs=...)` returns the distillation loss.

    Args:
        student (`PreTrainedModel`): the model being distilled into.
        loss_terms (`list[LossTerm]`): the terms of the loss.
        extras (`nn.ModuleDict`, *optional*): trainable modules the terms use (e.g. projections).
    """

    def __init__(self, student: PreTrainedModel, loss_terms: list[LossTerm], extras: nn.ModuleDict | None = None):
        super().__init__()
        self.student = student
        self.extras = extras if extras is not None else nn.ModuleDict()
        self.loss_terms = [term for term in loss_terms if term.weight != 0]
        if not self.loss_terms:
            raise ValueError("Every loss term has weight 0: nothing to train")

    @property
    def config(self):
        return self.student.config

    @property
    def needs_hidden_states(self) -> bool:
        return any(term.needs_hidden_states for term in self.loss_terms)

    @property
    def needs_attentions(self) -> bool:
        return any(term.needs_attentions for term in self.loss_terms)

    @property
    def teacher_attention_layers(self) -> tuple[int, ...]:
        """The teacher layers whose attention scores some active term reads (what the teacher must record)."""
        return tuple(sorted({layer for term in self.loss_terms for layer in term.teacher_attention_layers}))

    @property
    def student_attention_layers(self) -> tuple[int, ...]:
        return tuple(sorted({layer for term in self.loss_terms for layer in term.student_attention_layers}))

    @property
    def teacher_ffn_layers(self) -> tuple[int, ...]:
        """The teacher layers whose FFN pre-activations some active term reads."""
        return tuple(sorted({layer for term in self.loss_terms for layer in term.teacher_ffn_layers}))

    @property
    def student_ffn_layers(self) -> tuple[int, ...]:
        return tuple(sorted({layer for term in self.loss_terms for layer in term.student_ffn_layers}))

    @property
    def needs_teacher(self) -> bool:
        return any(term.needs_teacher for term in self.loss_terms)

    @property
    def teacher_hidden_layers(self) -> tuple[int, ...] | None:
        """The teacher hidden states the active terms read, sorted; `None` when one of them may read any layer, and
        `()` when none reads hidden states."""
        layers: set[int] = set()
        for term in self.loss_terms:
            if not (term.needs_teacher and term.needs_hidden_states):
                continue
            if term.teacher_hidden_layers is None:
                return None
            layers.update(term.teacher_hidden_layers)
        return tuple(sorted(layers))

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        teacher_outputs: ModelOutput | None = None,
        distill: bool = False,
        teacher_logits: torch.Tensor | None = None,
    ) -> ModelOutput:
        """With `distill=False` (evaluation, prediction): the plain student, its logits and task loss. With
        `distill=True` (training): the weighted distillation loss against `teacher_outputs`, or against
        `teacher_logits` (a batch column of precomputed logits, see `bertdistill.teacher_cache`) when those are
        given instead."""
        if teacher_outputs is None and teacher_logits is not None:
            teacher_outputs = SequenceClassifierOutput(logits=teacher_logits)
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        if not distill:
            # A bare encoder (general distillation) has no task head and takes no labels.
            return self.student(**inputs, labels=labels) if labels is not None else self.student(**inputs)

        with recording_ffn_inputs(self.student, self.student_ffn_layers) as ffn:
            outputs = self.student(
                **inputs, output_hidden_states=self.needs_hidden_states, output_attentions=self.needs_attentions
            )
        if ffn:
            outputs.ffn = ffn
        attentions_by_layer(outputs, self.student_attention_layers)
        attentions_by_layer(teacher_outputs, self.teacher_attention_layers)
        batch = {**inputs, "labels": labels}
        components = {}
        for term in self.loss_terms:
            if term.needs_labels and labels is None:
                raise ValueError(f"Loss term {term.name!r} needs labels but the batch has none")
            components[term.name] = term.fn(outputs, teacher_outputs, batch, self.extras)
        loss = sum(term.weight * components[term.name] for term in self.loss_terms)
        return DistillationOutput(loss=loss, logits=getattr(outputs, "logits", None), loss_components=components)

    def save_pretrained(self, output_dir: str | os.PathLike, state_dict: dict | None = None, **kwargs) -> None:
        """Write the student as a plain Hugging Face checkpoint, and the extras (if any) to their own file."""
        if state_dict is None:
            state_dict = self.state_dict()
        student_state = {k.removeprefix("student."): v for k, v in state_dict.items() if k.startswith("student.")}
        self.student.save_pretrained(output_dir, state_dict=student_state, **kwargs)
        extras_state = {
            k.removeprefix("extras."): v.contiguous() for k, v in state_dict.items() if k.startswith("extras.")
        }
        if extras_state:
            safetensors.torch.save_file(extras_state, os.path.join(output_dir, EXTRAS_WEIGHTS_NAME))

    def load_checkpoint(self, checkpoint_dir: str | os.PathLike) -> None:
        """Load weights written by [`save_pretrained`] (resume, best-model loading)."""
        weights = os.path.join(checkpoint_dir, SAFE_WEIGHTS_NAME)
        if os.path.isfile(weights):
            self.student.load_state_dict(safetensors.torch.load_file(weights, device="cpu"), strict=True)
        elif os.path.isfile(os.path.join(checkpoint_dir, SAFE_WEIGHTS_INDEX_NAME)):
            load_sharded_checkpoint(self.student, checkpoint_dir, strict=True)
        else:
            raise FileNotFoundError(f"No student weights ({SAFE_WEIGHTS_NAME}) in checkpoint {checkpoint_dir}")
        extras = os.path.join(checkpoint_dir, EXTRAS_WEIGHTS_NAME)
        if len(self.extras):
            if not os.path.isfile(extras):
                raise FileNotFoundError(f"Checkpoint {checkpoint_dir} lacks {EXTRAS_WEIGHTS_NAME} (projections)")
            self.extras.load_state_dict(safetensors.torch.load_file(extras, device="cpu"), strict=True)
