"""`ONETrainer`: on-the-fly native ensemble distillation over branches of a network's top layers, no teacher."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn
from transformers import BertForSequenceClassification, PreTrainedModel
from transformers.masking_utils import create_bidirectional_mask

from ..losses import hard_label_loss, logit_mse, soft_target_kl
from ..modeling import LossTerm
from .distillation_trainer import DistillationTrainer
from .one_config import ONEConfig


class Branch(nn.Module):
    """A copy of a BERT classifier's top layers, pooler and classifier: one ONE branch."""

    def __init__(self, model: BertForSequenceClassification, shared: int, new_head: bool = False):
        super().__init__()
        self.layers = copy.deepcopy(model.bert.encoder.layer[shared:])
        self.pooler = copy.deepcopy(model.bert.pooler)
        self.dropout = copy.deepcopy(model.dropout)
        self.classifier = copy.deepcopy(model.classifier)
        if new_head:  # BERT's initialisation of the weights, drawn afresh; the bias starts where the network's did
            nn.init.normal_(self.classifier.weight, std=model.config.initializer_range)

    def forward(self, hidden: torch.Tensor, mask) -> torch.Tensor:
        for layer in self.layers:
            hidden = layer(hidden, mask)
        return self.classifier(self.dropout(self.pooler(hidden)))


class ONETrainer(DistillationTrainer):
    """ONE (Lan et al. 2018): the student is branch 1 (a stock BERT classifier: its shared lower layers and its own
    top layers); branches 2..M (copies of the top layers and head, trained from there) and the gate live in the
    wrapped model's extras, run on the student's shared hidden state inside the same forward. Logs `loss_ce`
    (every branch), `loss_ensemble_ce` and `loss_kd`.

    `trainer.extra_network("branch_<k>")` returns branch k (2..M) as a stock BERT classifier (the student's shared
    layers plus the branch's), so `distill_glue.py` saves, evaluates and cards each (`<output_dir>/branch_<k>`): the
    best single branch is a plain checkpoint to keep, whichever it is.

    Args:
        model (`BertForSequenceClassification`): the network (branch 1).
        teacher_model: must be `None`.
        args (`ONEConfig`): training and loss configuration.
    """

    method_name = "one"
    config_class = ONEConfig
    uses_teacher = False

    def __init__(self, model: PreTrainedModel, teacher_model: None = None, args: ONEConfig | None = None, **kwargs):
        if not isinstance(model, BertForSequenceClassification):
            raise ValueError(f"ONE branches a BERT classifier's top layers; got a {type(model).__name__}")
        layers = model.config.num_hidden_layers
        if isinstance(args, ONEConfig):
            shared = layers - 1 if args.one_shared_layers is None else args.one_shared_layers
            if shared >= layers:
                raise ValueError(
                    f"one_shared_layers={shared} leaves no layer to branch in a {layers}-layer network; at most "
                    f"{layers - 1}"
                )
            self._shared = shared
        super().__init__(model, teacher_model, args, **kwargs)

    def build_extras(self, student: PreTrainedModel, teacher: None) -> nn.ModuleDict:
        branches = {
            f"branch_{k}": Branch(student, self._shared, new_head=self.args.one_new_heads)
            for k in range(2, self.args.one_branches + 1)
        }
        return nn.ModuleDict({**branches, "gate": nn.Linear(student.config.hidden_size, self.args.one_branches)})

    def build_loss_terms(self, student: PreTrainedModel, teacher: None) -> list[LossTerm]:
        args, shared = self.args, self._shared
        regression = student.config.num_labels == 1
        config = student.config

        def branches(s, batch, extras):
            """Every branch's logits and the gated ensemble's, once per forward (`batch` lives for one forward)."""
            if "_one" not in batch:
                hidden = s.hidden_states[shared]
                mask = create_bidirectional_mask(config=config, inputs_embeds=hidden,
                                                 attention_mask=batch["attention_mask"])  # fmt: skip
                logits = [s.logits] + [extras[f"branch_{k}"](hidden, mask) for k in range(2, args.one_branches + 1)]
                gate = extras["gate"](hidden[:, 0]).softmax(-1)  # (B, M)
                ensemble = (gate.unsqueeze(-1) * torch.stack(logits, 1)).sum(1)
                batch["_one"] = (logits, ensemble)
            return batch["_one"]

        def ce(s, t, batch, extras):
            return sum(hard_label_loss(z, batch["labels"]) for z in branches(s, batch, extras)[0])

        def ensemble_ce(s, t, batch, extras):
            return hard_label_loss(branches(s, batch, extras)[1], batch["labels"])

        def kd(s, t, batch, extras):
            logits, ensemble = branches(s, batch, extras)
            target = ensemble.detach()
            if regression:
                return sum(logit_mse(z, target) for z in logits)
            return sum(soft_target_kl(z, target, args.temperature) for z in logits)

        return [
            LossTerm("ce", args.alpha_ce, ce, needs_labels=True, needs_teacher=False, needs_hidden_states=True),
            LossTerm(
                "ensemble_ce",
                args.ensemble_ce_weight,
                ensemble_ce,
                needs_labels=True,
                needs_teacher=False,
                needs_hidden_states=True,
            ),  # fmt: skip
            LossTerm("kd", args.alpha_kd, kd, needs_teacher=False, needs_hidden_states=True),
        ]

    def branch_model(self, k: int) -> BertForSequenceClassification:
        """Branch `k` (1..M) as a stock BERT classifier: the shared layers of the student and the branch's own."""
        student = self.student
        if k == 1:
            return student
        branch = self.accelerator.unwrap_model(self.model).extras[f"branch_{k}"]
        model = copy.deepcopy(student)
        for index, layer in enumerate(branch.layers, start=self._shared):
            model.bert.encoder.layer[index].load_state_dict(layer.state_dict())
        model.bert.pooler.load_state_dict(branch.pooler.state_dict())
        model.classifier.load_state_dict(branch.classifier.state_dict())
        return model

    def extra_network_names(self) -> list[str]:
        return [f"branch_{k}" for k in range(2, self.args.one_branches + 1)]

    def extra_network(self, name: str) -> PreTrainedModel:
        if name not in self.extra_network_names():
            return super().extra_network(name)
        return self.branch_model(int(name.removeprefix("branch_")))

    def hyperparameters(self) -> dict[str, Any]:
        args = self.args
        return {
            "teacher": "none (the gated ensemble of the branches)",
            "branches": args.one_branches,
            "shared_layers": self._shared,
            "alpha_ce": args.alpha_ce,
            "ensemble_weight": args.ensemble_ce_weight,
            "alpha_kd": args.alpha_kd,
            "temperature": args.temperature,
            "branch_heads": "initialised afresh" if args.one_new_heads else "copies of the network's",
        }
