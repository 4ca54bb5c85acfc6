"""`DynaBertTrainer`: DynaBERT's width-adaptive and width-and-depth-adaptive distillation of one elastic BERT."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader
from transformers import PreTrainedModel
from transformers.training_args import OptimizerNames

from ..compression import (
    bert_encoder,
    compute_importance,
    copy_full_model,
    elastic_setting,
    get_elastic_setting,
    kept_layers,
    make_elastic,
    rewire,
)
from ..layer_maps import LayerMatch
from ..layer_matching import layer_match_term
from ..modeling import LossTerm
from .distillation_trainer import DistillationTrainer
from .dynabert_config import STAGES, DynaBertConfig


def sub_network_layer_map(num_layers: int, depth_mult: float) -> list[LayerMatch]:
    """The hidden-state matches of the sub-network at `depth_mult`: embeddings 0 -> 0, and the output of each kept
    layer with the full model's output just before the next kept layer (the last: the full model's output)."""
    kept = kept_layers(num_layers, depth_mult)
    targets = [*kept[1:], num_layers]
    return [LayerMatch(0, 0), *(LayerMatch(target, layer + 1) for layer, target in zip(kept, targets))]


class DynaBertTrainer(DistillationTrainer):
    """DynaBERT (Hou et al. 2020), one stage: trains every sub-network of an elastic BERT on each batch.

    The student starts as a copy of the fine-tuned teacher (same depth and width). Before the width stage its heads
    and neurons are reordered by importance (computed on the first `args.importance_samples` training rows, the
    same rows on every process), so that each width keeps the most important ones. Each step runs the sub-networks
    of `args.settings()` smallest first, back-propagates each one's loss (`loss_pred`, `loss_hidden`, averaged over
    sub-networks in the logs), and the optimiser steps once on the summed gradients. Under DDP the gradients are
    synchronised once, in the backward of the full model, which uses every parameter. Evaluation runs the full
    model; `scripts/dynabert_grid.py` evaluates every setting and exports sub-networks. The optional final stage
    (`stage="final"`) fine-tunes every sub-network on the gold labels alone; the teacher is not run.

    Args:
        model (`PreTrainedModel`): a BERT `*ForSequenceClassification`, the copy of the teacher to make elastic.
        teacher_model (`PreTrainedModel`): the fine-tuned teacher (width stage) or the width stage's full model
            (width-and-depth stage; see [`teacher_for_next_stage`]).
        args (`DynaBertConfig`): training and loss configuration.
    """

    method_name = "dynabert"
    config_class = DynaBertConfig

    def __init__(self, model: PreTrainedModel, teacher_model: PreTrainedModel, args: DynaBertConfig, **kwargs):
        bert_encoder(model)
        self.check_one_stage(getattr(args, "stage", None), STAGES)
        for name in ("num_hidden_layers", "hidden_size"):
            if getattr(model.config, name) != getattr(teacher_model.config, name):
                raise ValueError(
                    f"DynaBERT trains a copy of the teacher: the student's {name} ({getattr(model.config, name)}) "
                    f"differs from the teacher's ({getattr(teacher_model.config, name)})"
                )
        super().__init__(model, teacher_model, args, **kwargs)
        if self.is_deepspeed_enabled or args.optim in (OptimizerNames.LOMO, OptimizerNames.ADALOMO):
            raise ValueError(
                "DynaBERT back-propagates every sub-network separately before one optimiser step; DeepSpeed's engine "
                "and the LOMO optimisers (which update inside backward) do not allow that. Use plain DDP and another "
                "optimizer"
            )
        make_elastic(self.student)
        if self.uses_width_matched_teacher():
            if not getattr(teacher_model.config, "dynabert_rewired", False):
                raise ValueError(
                    "The width-and-depth stage with width_matched_teacher=True runs the teacher at each width, so the "
                    "teacher must be the width stage's (rewired) model; got a teacher whose config is not rewired. "
                    "Pass the width stage's output, or set width_matched_teacher=False"
                )
            make_elastic(self.accelerator.unwrap_model(self.teacher))
        if args.rewire and args.stage == "width" and not getattr(self.student.config, "dynabert_rewired", False):
            self.rewire_student()

    def rewire_student(self) -> None:
        """Importance on the first `importance_samples` training rows, then reorder heads and neurons."""
        if self.train_dataset is None:
            raise ValueError("Rewiring needs a train_dataset (or pass rewire=False)")
        rows = self.train_dataset.select(range(min(self.args.importance_samples, len(self.train_dataset))))
        rows = self._remove_unused_columns(rows, description="importance")
        # A plain loader, not sharded: every process computes the same importance and rewires identically.
        loader = DataLoader(rows, batch_size=self.args.per_device_eval_batch_size, collate_fn=self.data_collator)
        self.importance = compute_importance(
            self.student, loader, progress=not self.args.disable_tqdm, gradients=self.args.importance_gradients
        )
        rewire(self.student, self.importance)

    def build_loss_terms(self, student: PreTrainedModel, teacher: PreTrainedModel) -> list[LossTerm]:
        args = self.args
        if args.stage == "final":  # gold labels only: the teacher is never run
            return [self.task_loss_term(1.0)]
        num_layers = student.config.num_hidden_layers

        def current_matches():
            return sub_network_layer_map(num_layers, get_elastic_setting(student)[1])

        return [
            self.task_loss_term(args.alpha_ce),
            self.prediction_loss_term(args.alpha_kd, args.temperature, student.config.num_labels == 1),
            layer_match_term("hidden", args.stage_alpha_hidden(), current_matches, {"hidden": "mse"}),
        ]

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Every sub-network of the stage on this batch, smallest first. All but the last (the full model) are
        back-propagated here, each scaled as `Trainer.training_step` scales a loss and without gradient
        synchronisation; the full model's loss is returned for `training_step` to back-propagate as usual, which
        synchronises every gradient once under DDP. The returned value also carries the others' (detached) losses,
        so the logged loss is the sum over sub-networks."""
        if not model.training:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        settings = self.args.settings()
        teacher_outputs = self._teacher_outputs_by_width(self.accelerator.unwrap_model(model), inputs, settings)
        # Set by the training loop (the last accumulation window may be shorter); the configured value outside it.
        accumulation = getattr(self, "current_gradient_accumulation_steps", self.args.gradient_accumulation_steps)
        earlier = torch.zeros((), device=self.args.device)
        for width, depth in settings[:-1]:
            with self.accelerator.no_sync(model), elastic_setting(self.student, width, depth):
                loss = self._distill_forward(model, inputs, teacher_outputs[width]).loss
                if self.args.n_gpu > 1:
                    loss = loss.mean()
                loss = loss / accumulation
                self.accelerator.backward(loss)
            earlier += loss.detach()
        width, depth = settings[-1]
        with elastic_setting(self.student, width, depth):
            outputs = self._distill_forward(model, inputs, teacher_outputs[width])
        loss = outputs.loss + (earlier * accumulation).to(outputs.loss.dtype)
        return (loss, outputs) if return_outputs else loss

    def uses_width_matched_teacher(self) -> bool:
        return self.args.stage == "width_depth" and self.args.width_matched_teacher

    def _teacher_outputs_by_width(self, wrapper, inputs, settings) -> dict[float, Any]:
        """`{width: teacher outputs}` for the widths of `settings`: the teacher at that width and full depth when
        `width_matched_teacher` applies (one teacher pass per width), otherwise the full teacher's, shared."""
        widths = sorted({width for width, _ in settings})
        if not self.uses_width_matched_teacher():
            shared = self._teacher_outputs(wrapper, inputs)
            return dict.fromkeys(widths, shared)
        teacher = self.accelerator.unwrap_model(self.teacher)
        outputs = {}
        for width in widths:
            with elastic_setting(teacher, width, 1.0):
                outputs[width] = self._teacher_outputs(wrapper, inputs)
        return outputs

    @classmethod
    def teacher_for_next_stage(cls, teacher: PreTrainedModel, student: PreTrainedModel) -> PreTrainedModel:
        """The width-and-depth stage learns from the width stage's full-size model (a frozen copy)."""
        return copy_full_model(student)

    def hyperparameters(self) -> dict[str, Any]:
        args = self.args
        settings = ", ".join(f"({w:g}, {d:g})" for w, d in args.settings())
        if args.stage == "final":
            return {"stage": "final", "settings (width, depth)": settings, "loss": "task loss on gold labels"}
        return {
            "stage": args.stage,
            "settings (width, depth)": settings,
            "alpha_kd": args.alpha_kd,
            "alpha_hidden": args.stage_alpha_hidden(),
            **(
                {"teacher": "the width stage's model at each sub-network's width, full depth"}
                if self.uses_width_matched_teacher()
                else {}
            ),
            "alpha_ce": args.alpha_ce,
            "temperature": args.temperature,
            "rewired on": f"first {args.importance_samples} training rows",
        }
