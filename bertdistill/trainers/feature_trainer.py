"""`FeatureDistillationTrainer`: logit KD plus any of the intermediate-knowledge losses of `bertdistill.losses`."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import safetensors.torch
from torch import nn
from transformers import PreTrainedModel

from ..layer_maps import LayerMatch, describe, resolve_layer_map
from ..layer_matching import check_matches, layer_match_term, match_loss, parts_key
from ..losses import default_feature, get_match_loss
from ..modeling import EXTRAS_WEIGHTS_NAME, LossTerm
from ..samplers import ClassBalancedSampler, class_labels
from ..speed_levers import choose
from .distillation_trainer import DistillationTrainer
from .feature_config import FEATURE_STAGES, FeatureDistillationConfig, parse_feature_losses


def feature_matches(args: FeatureDistillationConfig, num_teacher_layers: int, num_student_layers: int):
    """The run's matches: the layer map's matches that name a loss as they are, and every loss of
    `args.feature_losses` on each of the others (with its weight; FSP on consecutive ones, from the embeddings;
    attention and FFN features skip layer 0)."""
    base = resolve_layer_map(args.layer_map, num_teacher_layers, num_student_layers)
    named = [m for m in base if m.loss]
    plain = [m for m in base if not m.loss]
    losses = parse_feature_losses(args.feature_losses)
    if plain and not losses:
        raise ValueError(
            f"Layer map matches {describe(plain)} name no loss; name one in each or give --feature_losses"
        )
    matches = list(named)
    for (name, feature), weight in zip(losses, args.weights()):
        loss = get_match_loss(name, feature or default_feature(name))
        if loss.layer_pair:
            chain = sorted(plain, key=lambda m: m.student_layer)
            if not chain or chain[0].student_layer != 0:
                chain = [LayerMatch(0, 0), *chain]
            matches.extend(
                LayerMatch(a.teacher_layer, a.student_layer, loss.feature, name, weight * a.weight, a.proj,
                           student_end_layer=b.student_layer, teacher_end_layer=b.teacher_layer)
                for a, b in zip(chain, chain[1:])
            )  # fmt: skip
            continue
        for m in plain:
            if loss.feature != "hidden" and 0 in (m.student_layer, m.teacher_layer):
                continue
            proj = m.proj and loss.width in ("same", "any")
            matches.append(
                dataclasses.replace(m, feature=loss.feature, loss=name, weight=weight * m.weight, proj=proj)
            )
    if not matches:
        raise ValueError(f"No feature-loss match from layer map {args.layer_map!r} and {args.feature_losses!r}")
    return matches


class FeatureDistillationTrainer(DistillationTrainer):
    """Feature distillation: `alpha_ce * CE + alpha_kd * KD` plus, per loss, the sum of its weighted matches
    (logged as `loss_<name>`, weights included), with FitNet's and AB's pre-training of the student and FT's of its
    paraphraser as a stage of their own (see [`FeatureDistillationConfig`]).

    The losses' trainable parts (FitNet's regressors, VID's regressors and variances, FT's paraphraser and
    translator, AB's connectors, projections of narrower students) live in the trained model's `extras`: optimised,
    checkpointed, resumed and synchronised by DDP; the task stage loads FT's pre-trained paraphraser from the
    pre-training stage's folder.

    Args:
        model (`PreTrainedModel`): the student.
        teacher_model (`PreTrainedModel`): the fine-tuned teacher.
        args (`FeatureDistillationConfig`): training and loss configuration.
    """

    method_name = "feature"
    config_class = FeatureDistillationConfig

    def __init__(self, model: PreTrainedModel, teacher_model: PreTrainedModel, args, **kwargs):
        requested = (
            args.requested_lever("train_sampling_strategy") if isinstance(args, FeatureDistillationConfig) else None
        )
        if requested is not None and args.class_balanced_batches:
            raise ValueError(
                "class_balanced_batches replaces the training sampler; leave train_sampling_strategy unset (got "
                f"{requested!r})"
            )
        super().__init__(model, teacher_model, args, **kwargs)
        if args.class_balanced_batches:
            self._class_labels()
            self.speed_levers["train_sampling_strategy"] = choose(
                None, "class_balanced", "class_balanced_batches replaces the sampler"
            )

    def build_loss_terms(self, student: PreTrainedModel, teacher: PreTrainedModel) -> list[LossTerm]:
        args = self.args
        self.check_one_stage(args.stage, FEATURE_STAGES)
        matches = feature_matches(args, teacher.config.num_hidden_layers, student.config.num_hidden_layers)
        pretrained = args.pretrained_parts_dir is not None
        if args.stage == "pretrain":
            matches = [m for m in matches if match_loss(m, {}).pretrain]
            if not matches:
                raise ValueError(
                    f"stage 'pretrain': none of the losses ({', '.join(sorted(args.loss_names()))}) pre-trains "
                    "anything (FitNet, AB and FT do); use stage 'task'"
                )
        elif pretrained:
            matches = [m for m in matches if match_loss(m, {}).pretrain != "student"]
        check_matches(matches, {}, student.config, teacher.config, "Feature distillation",
                      args.per_device_train_batch_size)  # fmt: skip
        self.layer_map, self.default_losses = matches, {}

        groups: dict[str, list[LayerMatch]] = {}
        for m in matches:
            name = m.loss if m.feature == default_feature(m.loss) else f"{m.loss}_{m.feature}"
            groups.setdefault(name, []).append(m)
        terms = [] if args.stage == "pretrain" else super().build_loss_terms(student, teacher)
        for name, group in groups.items():
            if args.stage == "pretrain":
                mode = "pretrain_parts" if match_loss(group[0], {}).pretrain == "parts" else "joint"
            else:
                mode = "pretrained" if pretrained else "joint"
            terms.append(layer_match_term(name, 1.0, group, {}, parts_mode=mode))
        return terms

    def build_extras(self, student: PreTrainedModel, teacher: PreTrainedModel) -> nn.ModuleDict:
        """The projections and loss parts; in a task stage after pre-training, FT's paraphraser from that stage."""
        modules = super().build_extras(student, teacher)
        folder = self.args.pretrained_parts_dir
        keys = [parts_key(m, match_loss(m, {})) for m in self.layer_map if match_loss(m, {}).pretrain == "parts"]
        if folder is None or not keys or self.args.stage != "task":
            return modules
        path = os.path.join(folder, EXTRAS_WEIGHTS_NAME)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"The task stage loads the pre-trained parts ({', '.join(keys)}) from {path}, which does not exist: "
                "run the pre-training stage first (stage 'both' does) or unset pretrained_parts_dir"
            )
        state = safetensors.torch.load_file(path, device="cpu")
        for key in keys:
            part = {k[len(key) + 1 :]: v for k, v in state.items() if k.startswith(key + ".")}
            if not part:
                raise ValueError(f"{path} holds no weights of {key}: it comes from a run with other matches")
            modules[key].load_state_dict(part, strict=True)
        return modules

    def _class_labels(self) -> list[int]:
        return class_labels(self.train_dataset, self.student.config.num_labels, "class_balanced_batches")

    def _get_train_sampler(self, train_dataset=None):
        if not self.args.class_balanced_batches:
            return super()._get_train_sampler(train_dataset)
        return ClassBalancedSampler(self._class_labels(), self.args.per_device_train_batch_size, self.args.seed)

    def hyperparameters(self) -> dict[str, Any]:
        args = self.args
        rows = {"stage": args.stage, "layer_map": f"{args.layer_map} ({describe(self.layer_map)}, student<-teacher)"}
        if args.stage == "task":
            rows = {**super().hyperparameters(), **rows}
        if args.feature_losses:
            rows["feature_losses"] = args.feature_losses
            rows["feature_weights"] = ",".join(f"{w:g}" for w in args.weights())
        if args.class_balanced_batches:
            rows["class_balanced_batches"] = True
        return rows
