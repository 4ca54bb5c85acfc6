"""`GraftingTrainer`: networks trained side by side that graft each other's weights by entropy, no teacher."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel, TrainerCallback

from ..losses import hard_label_loss
from ..modeling import LossTerm
from ..peers import PEERS_KEY, check_peers, default_peers, network_logits
from ..student import student_from_teacher_layers
from .distillation_trainer import DistillationTrainer
from .dml_config import parse_peer_layers
from .grafting_config import GraftingConfig


def weight_entropy(weights: torch.Tensor, bins: int = 10) -> float:
    """Entropy (nats) of a tensor's values in `bins` equal-width bins between its minimum and maximum."""
    values = weights.detach().float().reshape(-1)
    low, high = float(values.min()), float(values.max())
    if high == low:
        return 0.0
    counts = torch.histc(values, bins=bins, min=low, max=high)
    p = counts[counts > 0] / values.numel()
    return float(-(p * p.log()).sum())


def grafting_coefficient(own: float, other: float, A: float, c: float) -> float:
    """The share a network keeps of its own tensor: `A / pi * arctan(c * (H_own - H_other)) + 0.5`."""
    return A / math.pi * math.atan(c * (own - other)) + 0.5


def grafted_names(model: nn.Module, which: str) -> list[str]:
    """The parameters a grafting round mixes: the encoder's 2-D weights (`"encoder_linear"`) or all."""
    names = [name for name, _ in model.named_parameters()]
    if which == "all":
        return names
    return [n for n, p in model.named_parameters() if ".encoder.layer." in f".{n}" and p.dim() == 2]


@torch.no_grad()
def graft(networks: list[nn.Module], names: list[str], A: float, c: float, bins: int) -> list[float]:
    """One grafting round, in place: network `i` mixes in network `i - 1` (cyclically) tensor by tensor, from the
    weights as they were before the round; returns the coefficients used, network by network."""
    params = [dict(net.named_parameters()) for net in networks]
    before = [{n: p[n].detach().clone() for n in names} for p in params]
    coefficients = []
    for i in range(len(networks)):
        j = (i - 1) % len(networks)
        for name in names:
            own, other = before[i][name], before[j][name]
            a = grafting_coefficient(weight_entropy(own, bins), weight_entropy(other, bins), A, c)
            params[i][name].copy_(a * own + (1 - a) * other)
            coefficients.append(a)
    return coefficients


class GraftingCallback(TrainerCallback):
    """Grafts every `every` steps, or after the last step of each epoch when `every` is None; at the step's end, so
    that a checkpoint saved at that step holds the grafted weights and a resumed run does not miss a round."""

    def __init__(self, trainer: GraftingTrainer, every: int | None):
        self.trainer, self.every = trainer, every

    def on_step_end(self, args, state, control, **kwargs):
        if self.every is not None:
            due = state.global_step % self.every == 0
        else:  # the Trainer sets the epoch to a whole number after an epoch's last step
            due = state.epoch is not None and abs(state.epoch - round(state.epoch)) < 1e-6
        if due:
            self.trainer.graft()


class GraftingTrainer(DistillationTrainer):
    """Knowledge / filter grafting (Meng et al. 2020): the student and `graft_networks - 1` networks of its shape
    (in the wrapped model's extras: one optimizer, DDP, checkpoints) each learn the labels, and graft each other's
    weights at intervals ([`GraftingCallback`]). Logs `loss_ce_<k>` per network and `graft_coefficient` (the mean
    share kept) after each round. The result is the student, one plain checkpoint.

    Args:
        model (`PreTrainedModel`): the student (network 0).
        teacher_model: must be `None`.
        args (`GraftingConfig`): training and grafting configuration.
        peers (`list[PreTrainedModel]`, *optional*): the other networks; default: from `args`.
    """

    method_name = "grafting"
    config_class = GraftingConfig
    uses_teacher = False

    def __init__(self, model, teacher_model=None, args: GraftingConfig | None = None, peers=None, **kwargs):
        if isinstance(args, GraftingConfig):
            if peers is None:
                if args.graft_peer_layers:
                    raise ValueError("graft_peer_layers needs the source model: pass peers= (distill_glue.py does)")
                peers = default_peers(model, args.graft_networks - 1, args.peer_checkpoints(), args.seed)
            if len(peers) != args.graft_networks - 1:
                raise ValueError(f"{len(peers)} other networks given but graft_networks is {args.graft_networks}")
            check_peers(model, peers, same_shape=True)
        self._peers = peers
        super().__init__(model, teacher_model, args, **kwargs)
        self._names = grafted_names(self.student, args.graft_tensors)
        self.add_callback(GraftingCallback(self, args.graft_every_steps))
        self.graft_log: list[dict[str, float]] = []

    @classmethod
    def script_kwargs(cls, args: GraftingConfig, source: PreTrainedModel) -> dict[str, Any]:
        layers = parse_peer_layers(args.graft_peer_layers)
        return {"peers": [student_from_teacher_layers(source, group) for group in layers]} if layers else {}

    def build_extras(self, student, teacher) -> nn.ModuleDict:
        return nn.ModuleDict({PEERS_KEY.format(k): peer for k, peer in enumerate(self._peers, start=1)})

    def build_loss_terms(self, student, teacher) -> list[LossTerm]:
        peers = len(self._peers)

        def ce(k):
            def fn(s, t, batch, extras):
                return hard_label_loss(network_logits(s, batch, extras, peers)[k], batch["labels"])

            return fn

        return [
            LossTerm(f"ce_{k}", self.args.alpha_ce, ce(k), needs_labels=True, needs_teacher=False)
            for k in range(peers + 1)
        ]

    def networks(self) -> list[nn.Module]:
        wrapper = self.accelerator.unwrap_model(self.model)
        return [wrapper.student, *(wrapper.extras[PEERS_KEY.format(k)] for k in range(1, len(self._peers) + 1))]

    def graft(self) -> list[float]:
        """One grafting round over every network (the same on every rank: their weights are equal after DDP)."""
        args = self.args
        coefficients = graft(self.networks(), self._names, args.graft_A, args.graft_c, args.graft_bins)
        entry = {"step": self.state.global_step, "graft_coefficient": sum(coefficients) / len(coefficients)}
        self.graft_log.append(entry)
        self.log({"graft_coefficient": entry["graft_coefficient"]})
        return coefficients

    def hyperparameters(self) -> dict[str, Any]:
        args = self.args
        return {
            "teacher": "none (networks grafting each other's weights)",
            "networks": args.graft_networks,
            "graft_every": f"{args.graft_every_steps} steps" if args.graft_every_steps else "epoch",
            "graft_A": args.graft_A,
            "graft_c": args.graft_c,
            "graft_bins": args.graft_bins,
            "graft_tensors": args.graft_tensors,
        }
