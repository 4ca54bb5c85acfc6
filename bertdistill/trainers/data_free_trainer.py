"""`DataFreeTrainer`: DAFL-style data-free distillation, the student trained on generated input embeddings only."""

from __future__ import annotations

import inspect
from typing import Any

import datasets
import torch
from torch import nn
from torch.utils.data import DataLoader
from transformers import PreTrainedModel

from ..data_free import (
    EmbeddingGenerator,
    activation_loss,
    information_entropy_loss,
    one_hot_loss,
    range_loss,
    spread_loss,
)
from ..losses import logit_mse, soft_target_kl
from ..modeling import DistillationModel, DistillationOutput, LossTerm
from .data_free_config import DataFreeConfig
from .distillation_trainer import DistillationTrainer

GENERATED_ROW = "generated_row"


class DataFreeModel(DistillationModel):
    """The wrapped model of data-free distillation: the student plus the generator (in `extras`); its training
    forward generates a batch, runs the teacher on it (gradients to the generator) and the student on it detached,
    and returns the generator's and the student's losses. The teacher is set by the trainer and is not a submodule
    (it stays out of the optimizer and of DDP). Evaluation runs the student on real inputs, as the base class does."""

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        labels=None,
        teacher_outputs=None,
        distill: bool = False,
        teacher_logits=None,
        generated_row=None,
    ) -> DistillationOutput:
        if not distill:
            return super().forward(input_ids, attention_mask, token_type_ids, labels, distill=False)
        teacher = self.__dict__["teacher"]
        generator: EmbeddingGenerator = self.extras["generator"]
        batch = generated_row.shape[0]
        generated = generator(generator.noise(batch, generated_row.device))
        teacher_embeds = generator.embed(generated, teacher.get_input_embeddings().weight.detach())
        mask = torch.ones(teacher_embeds.shape[:2], dtype=torch.long, device=teacher_embeds.device)
        types = torch.zeros_like(mask)
        teacher_out = teacher(inputs_embeds=teacher_embeds, attention_mask=mask, token_type_ids=types,
                              output_hidden_states=True)  # fmt: skip
        student_embeds = generator.embed(generated.detach(), self.student.get_input_embeddings().weight)
        student_out = self.student(inputs_embeds=student_embeds, attention_mask=mask, token_type_ids=types)
        weights = {term.name: term.weight for term in self.loss_terms}
        logits = teacher_out.logits
        components = {"act": activation_loss(teacher_out.hidden_states[-1][:, 0], self.reductions)}
        if self.target_range is None:
            components["oh"] = one_hot_loss(logits)
            components["ie"] = information_entropy_loss(logits, self.reductions)
            components["kd"] = soft_target_kl(student_out.logits, logits.detach(), self.temperature)
        else:  # a regression teacher: the class-based terms' counterparts over the target range
            low, high, bins = self.target_range
            components["range"] = range_loss(logits, low, high)
            components["spread"] = spread_loss(logits, low, high, bins, self.reductions)
            components["kd"] = logit_mse(student_out.logits, logits.detach())
        components = {k: v for k, v in components.items() if k in weights}
        loss = sum(weights[name] * value for name, value in components.items())
        return DistillationOutput(loss=loss, logits=student_out.logits, loss_components=components)


class DataFreeTrainer(DistillationTrainer):
    """DAFL (Chen et al. 2019) for BERT: the student never reads a training row. `train()` iterates over
    `args.dafl_rows_per_epoch` generated rows per epoch; evaluation uses the real dev set given as `eval_dataset`.
    Logs `loss_oh`, `loss_act`, `loss_ie` (the generator's; `loss_range`, `loss_act`, `loss_spread` for a
    regression teacher) and `loss_kd` (the student's).

    Args:
        model (`PreTrainedModel`): the student; it must take `inputs_embeds` (BERT-style) and, for
            `dafl_output="free"`, have the teacher's hidden size.
        teacher_model (`PreTrainedModel`): the fine-tuned teacher: a classifier, or a regressor with
            `args.dafl_target_range` (the class-based losses' regression counterparts, see `bertdistill.data_free`).
        args (`DataFreeConfig`): training and loss configuration.
        train_dataset: must be `None` (there is no training data).
    """

    method_name = "data_free"
    config_class = DataFreeConfig
    wrapper_class = DataFreeModel
    reads_train_set = False

    def __init__(self, model: PreTrainedModel, teacher_model: PreTrainedModel | None = None, args=None, **kwargs):
        if kwargs.get("train_dataset") is not None:
            raise ValueError("Data-free distillation never reads training rows: pass no train_dataset")
        tokenizer = kwargs.get("processing_class")
        if getattr(tokenizer, "cls_token_id", None) is None or getattr(tokenizer, "sep_token_id", None) is None:
            raise ValueError("Data-free distillation frames generated rows with [CLS] and [SEP]: pass the teacher's "
                             "tokenizer as processing_class")  # fmt: skip
        self._frame_ids = (tokenizer.cls_token_id, tokenizer.sep_token_id)
        if isinstance(args, DataFreeConfig):
            if teacher_model is not None:  # (without one, the base class says that this method needs it)
                self._check_target_range(teacher_model, args)
            for name, network in (("student", model), ("teacher", teacher_model)):
                if network is not None and "inputs_embeds" not in inspect.signature(network.forward).parameters:
                    raise ValueError(f"The {name} ({type(network).__name__}) cannot take inputs_embeds")
            if (args.dafl_output == "free" and teacher_model is not None
                    and model.config.hidden_size != teacher_model.config.hidden_size):  # fmt: skip
                raise ValueError(
                    f"dafl_output='free' feeds the teacher's {teacher_model.config.hidden_size}-wide embeddings to a "
                    f"{model.config.hidden_size}-wide student; use dafl_output='vocab'"
                )
            kwargs["train_dataset"] = datasets.Dataset.from_dict(
                {GENERATED_ROW: list(range(args.dafl_rows_per_epoch))}
            )
        super().__init__(model, teacher_model, args, **kwargs)
        wrapper = self.accelerator.unwrap_model(self.model)
        wrapper.__dict__["teacher"] = self.accelerator.unwrap_model(self.teacher)  # not a submodule: see DataFreeModel
        wrapper.temperature = args.temperature
        wrapper.reductions = args.dafl_reductions
        wrapper.target_range = (*args.dafl_target_range, args.dafl_bins) if args.dafl_target_range else None

    @staticmethod
    def _check_target_range(teacher: PreTrainedModel, args: DataFreeConfig) -> None:
        """A regression teacher needs `dafl_target_range`; a classifier must not get one."""
        regression = teacher.config.num_labels == 1
        if regression and args.dafl_target_range is None:
            raise ValueError(
                "This teacher predicts one value (regression): data-free distillation needs its target range, "
                "dafl_target_range low high (STS-B: 0 5), for the generator's range and spread losses"
            )
        if not regression and args.dafl_target_range is not None:
            raise ValueError(
                f"dafl_target_range {args.dafl_target_range} is for a regression teacher; this one has "
                f"{teacher.config.num_labels} classes"
            )

    @classmethod
    def configure_for_task(cls, args: DataFreeConfig, task) -> None:
        """A regression task's target range (STS-B: 0 to 5) unless `dafl_target_range` was given."""
        if task.is_regression and args.dafl_target_range is None and task.label_range is not None:
            args.dafl_target_range = [float(v) for v in task.label_range]

    def build_extras(self, student: PreTrainedModel, teacher: PreTrainedModel) -> nn.ModuleDict:
        args = self.args
        cls_id, sep_id = self._frame_ids
        generator = EmbeddingGenerator(teacher.get_input_embeddings().weight, cls_id, sep_id, args.dafl_length,
                                       args.dafl_output, temperature=args.dafl_temperature)  # fmt: skip
        return nn.ModuleDict({"generator": generator})

    def build_loss_terms(self, student: PreTrainedModel, teacher: PreTrainedModel) -> list[LossTerm]:
        args = self.args

        def unused(*_):  # DataFreeModel computes the terms; these carry their names and weights
            raise RuntimeError("computed by DataFreeModel")

        if args.dafl_target_range is not None:
            return [LossTerm("range", 1.0, unused), LossTerm("act", args.dafl_alpha, unused),
                    LossTerm("spread", args.dafl_beta, unused), LossTerm("kd", args.alpha_kd, unused)]  # fmt: skip
        return [LossTerm("oh", 1.0, unused), LossTerm("act", args.dafl_alpha, unused),
                LossTerm("ie", args.dafl_beta, unused), LossTerm("kd", args.alpha_kd, unused)]  # fmt: skip

    def get_train_dataloader(self) -> DataLoader:
        def collate(rows):
            return {GENERATED_ROW: torch.tensor([row[GENERATED_ROW] for row in rows])}

        loader = DataLoader(self.train_dataset, batch_size=self._train_batch_size, shuffle=False, collate_fn=collate)
        return self.accelerator.prepare(loader)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not model.training:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        outputs = self._distill_forward(model, {GENERATED_ROW: inputs[GENERATED_ROW]}, None)
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def own_parameter_groups(self):
        """The base groups, and the generator at `generator_learning_rate`."""
        generator = list(self.accelerator.unwrap_model(self.model).extras["generator"].parameters())
        return [*super().own_parameter_groups(), (generator, self.args.generator_learning_rate)]

    def hyperparameters(self) -> dict[str, Any]:
        args = self.args
        return {
            "teacher": "given; no training data (generated input embeddings)",
            "dafl_output": args.dafl_output,
            "dafl_length": args.dafl_length,
            "dafl_alpha": args.dafl_alpha,
            "dafl_beta": args.dafl_beta,
            "dafl_reductions": args.dafl_reductions,
            "dafl_target_range": args.dafl_target_range,
            "dafl_bins": args.dafl_bins,
            "generator_learning_rate": args.generator_learning_rate,
            "alpha_kd": args.alpha_kd,
            "temperature": args.temperature,
        }
