"""`DMLTrainer`: deep mutual learning of a student and its peers, with or without a teacher."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel

from ..losses import hard_label_loss, logit_mse, soft_target_kl
from ..modeling import LossTerm
from ..peers import PEERS_KEY, check_peers, default_peers, network_logits
from ..student import student_from_teacher_layers
from .distillation_trainer import DistillationTrainer
from .dml_config import DMLConfig, parse_peer_layers


class DMLTrainer(DistillationTrainer):
    """Deep mutual learning (Zhang et al. 2018): the student and its peers train together, each on the labels and on
    the others' predictions (and on a teacher's, when one is given). Logs `loss_ce_<k>`, `loss_dml_<k>` (and
    `loss_kd_<k>`) for every network, `k = 0` being the student.

    The peers live in the wrapped model's `extras` (`peer_1`, `peer_2`, ...): one optimizer, one DDP all-reduce,
    checkpointed and resumed with the student. `trainer.extra_network(name)` returns each; `distill_glue.py` saves each
    as its own plain checkpoint in `<output_dir>/peer_<k>`, with its own metrics and model card.

    Args:
        model (`PreTrainedModel`): the student (network 0).
        teacher_model (`PreTrainedModel`, *optional*): a fixed teacher every network also learns from.
        args (`DMLConfig`): training and loss configuration.
        peers (`list[PreTrainedModel]`, *optional*): the peers; default: from `args` (`dml_peers_from`, else
            `dml_num_peers` copies of the student with freshly initialised classifiers; `dml_peer_layers` needs the
            source model, see [`script_kwargs`]).
    """

    method_name = "dml"
    config_class = DMLConfig
    uses_teacher = None  # optional

    def __init__(
        self,
        model: PreTrainedModel,
        teacher_model: PreTrainedModel | None = None,
        args: DMLConfig | None = None,
        peers: list[PreTrainedModel] | None = None,
        **kwargs,
    ):
        if isinstance(args, DMLConfig):
            if peers is None:
                if args.dml_peer_layers:
                    raise ValueError("dml_peer_layers needs the source model: pass peers= (distill_glue.py does)")
                peers = default_peers(model, args.dml_num_peers, args.peer_checkpoints(), args.seed)
            if len(peers) != args.dml_num_peers:
                raise ValueError(f"{len(peers)} peers given but dml_num_peers is {args.dml_num_peers}")
            check_peers(model, peers)
        self._peers = peers
        super().__init__(model, teacher_model, args, **kwargs)

    @classmethod
    def script_kwargs(cls, args: DMLConfig, source: PreTrainedModel) -> dict[str, Any]:
        """distill_glue.py's extra trainer arguments: peers from `dml_peer_layers` of the student's source model."""
        layers = parse_peer_layers(args.dml_peer_layers)
        return {"peers": [student_from_teacher_layers(source, group) for group in layers]} if layers else {}

    def build_extras(self, student: PreTrainedModel, teacher: PreTrainedModel | None) -> nn.ModuleDict:
        return nn.ModuleDict({PEERS_KEY.format(k): peer for k, peer in enumerate(self._peers, start=1)})

    def build_loss_terms(self, student: PreTrainedModel, teacher: PreTrainedModel | None) -> list[LossTerm]:
        args = self.args
        networks = len(self._peers) + 1
        regression = student.config.num_labels == 1

        def all_logits(s, batch, extras) -> list[torch.Tensor]:
            return network_logits(s, batch, extras, networks - 1)

        def ce(k):
            def fn(s, t, batch, extras):
                return hard_label_loss(all_logits(s, batch, extras)[k], batch["labels"])

            return fn

        def mutual(k):
            def fn(s, t, batch, extras):
                logits = all_logits(s, batch, extras)
                others = [logits[j].detach() for j in range(networks) if j != k]
                if regression:
                    return sum(logit_mse(logits[k], other) for other in others) / len(others)
                return sum(soft_target_kl(logits[k], other, args.temperature) for other in others) / len(others)

            return fn

        def kd(k):
            def fn(s, t, batch, extras):
                z = all_logits(s, batch, extras)[k]
                return logit_mse(z, t.logits) if regression else soft_target_kl(z, t.logits, args.temperature)

            return fn

        terms = []
        for k in range(networks):
            terms.append(LossTerm(f"ce_{k}", args.alpha_ce, ce(k), needs_labels=True, needs_teacher=False))
            terms.append(LossTerm(f"dml_{k}", args.dml_weight, mutual(k), needs_teacher=False))
            if teacher is not None:
                terms.append(LossTerm(f"kd_{k}", args.alpha_kd, kd(k)))
        if teacher is not None and args.alpha_kd == 0:
            raise ValueError("A teacher is given but alpha_kd is 0: it would never be read; drop it or raise alpha_kd")
        return terms

    def extra_network_names(self) -> list[str]:
        return [PEERS_KEY.format(k) for k in range(1, len(self._peers) + 1)]

    def extra_network(self, name: str) -> PreTrainedModel:
        if name not in self.extra_network_names():
            return super().extra_network(name)
        return self.accelerator.unwrap_model(self.model).extras[name]

    def hyperparameters(self) -> dict[str, Any]:
        args = self.args
        rows = {
            "teacher": "given (every network also learns from it)" if self.teacher is not None else "none",
            "networks": len(self._peers) + 1,
            "alpha_ce": args.alpha_ce,
            "dml_weight": args.dml_weight,
            "temperature": args.temperature,
        }
        if self.teacher is not None:
            rows["alpha_kd"] = args.alpha_kd
        return rows
