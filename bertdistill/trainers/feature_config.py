"""Configuration of feature distillation: the intermediate-knowledge losses of `bertdistill.losses` (FitNet, AT, SP,
RKD, PKT, CC, NST, FSP, VID, FT, AB) on top of logit KD."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from ..losses import MATCH_LOSSES, default_feature, get_match_loss
from .distillation_config import DistillationTrainingConfig

FEATURE_STAGES = ("pretrain", "task")
FEATURE_SCRIPT_STAGES = (*FEATURE_STAGES, "both")


def parse_feature_losses(spec: str | None) -> list[tuple[str, str | None]]:
    """`"rkd,sp,at:attention"` -> `[("rkd", None), ("sp", None), ("at", "attention")]` (name, feature or default)."""
    if not spec:
        return []
    items = []
    for part in spec.split(","):
        name, _, feature = part.strip().partition(":")
        if name not in MATCH_LOSSES:
            raise ValueError(
                f"Unknown feature loss {name!r} in --feature_losses. Registered: {', '.join(sorted(MATCH_LOSSES))}"
            )
        if feature:
            get_match_loss(name, feature)
        items.append((name, feature or None))
    return items


def _map_loss_names(layer_map: str) -> set[str]:
    """The losses a JSON layer map (text or file) names itself; none for presets and `"s:t"` pairs."""
    text = layer_map.strip()
    if text.endswith(".json") and os.path.isfile(text):
        with open(text, encoding="utf-8") as f:
            items = json.load(f)
    elif text.startswith("["):
        items = json.loads(text)
    else:
        return set()
    return {item["loss"] for item in items if isinstance(item, dict) and item.get("loss")}


@dataclass
class FeatureDistillationConfig(DistillationTrainingConfig):
    r"""
    Configuration for [`FeatureDistillationTrainer`]: `alpha_ce * CE + alpha_kd * KD + sum over feature losses`.

    Each loss of `feature_losses` is applied to every match of `layer_map` (FSP to consecutive matches: the flow from
    one mapped layer to the next, starting at the embeddings), with its weight. A JSON layer map can also name each
    match's loss, feature and weight itself (`{"student": 2, "teacher": 4, "loss": "vid", "weight": 1}` as
    `LayerMatch` fields); matches without a loss then take the losses of `feature_losses`.

    Default weights (the papers', the authors' code's, or the CRD benchmark's reference implementation where neither
    gives one for classification): fitnet 100, at 500 (the authors' `beta / 2` with `beta = 1000`), at_norm 1,
    sp 3000, rkd 25 (distance + 2 x angle), rkd_distance 25, rkd_angle 50, pkt 30000, cc 0.02, nst 50, fsp 50, vid 1,
    ft 200, ab 1. They were set for CNN features; the scales of a transformer's states differ, so tune them
    (`scripts/checks/compare_feature_losses.py` reports what they gave here).

    Stages: FitNet (hints) and AB (activation boundaries) first train the student with their loss alone, FT first
    trains its paraphraser on the teacher's states; then the task stage trains with CE + KD and the other losses (FT
    with its paraphraser fixed). `stage="both"` runs the two in turn (`distill_glue.py` does), `"pretrain"` or
    `"task"` one of them; a `"task"` stage with no pre-training before it keeps FitNet's and AB's losses as terms and
    trains FT's paraphraser alongside.

    Args:
        feature_losses (`str`, *optional*): comma-separated loss names, each optionally with the feature it reads
            (`"rkd,sp"`, `"at:attention"`); see `bertdistill.losses.MATCH_LOSSES`.
        feature_weights (`str`, *optional*): comma-separated weights, one per loss of `feature_losses` (default:
            each loss's default weight).
        layer_map (`str`, *optional*, defaults to `"uniform"`): the matches (student layer m from teacher layer
            m N / M), another preset, `"s:t,..."` pairs or JSON (text or a `.json` file).
        stage (`str`, *optional*, defaults to `"both"`): `"pretrain"`, `"task"` or `"both"`.
        pretrain_num_train_epochs (`float`, *optional*): epochs of the pre-training stage of `"both"` (default:
            `num_train_epochs`).
        pretrain_learning_rate (`float`, *optional*): its learning rate (default: `learning_rate`).
        pretrained_parts_dir (`str`, *optional*): the folder of a finished pre-training stage whose loss parts (FT's
            paraphraser) the task stage loads; `"both"` sets it. Given, FitNet's and AB's losses are left out of the
            task stage (they were its pre-training).
        class_balanced_batches (`bool`, *optional*, defaults to `False`): batches with every class in equal numbers
            (CC's sampling, `bertdistill.samplers.ClassBalancedSampler`); classification tasks only. It replaces the
            sampler: `train_sampling_strategy` must be left unset.
    """

    feature_losses: str | None = field(
        default=None,
        metadata={
            "help": "Comma-separated feature losses (fitnet, at, sp, rkd, pkt, cc, nst, fsp, vid, ft, ab, ...)."
        },
    )
    feature_weights: str | None = field(
        default=None, metadata={"help": "Comma-separated weights, one per feature loss (default: each loss's)."}
    )
    layer_map: str = field(default="uniform", metadata={"help": "uniform, another preset, 's:t,...' pairs or JSON."})
    stage: str = field(default="both", metadata={"help": "pretrain, task, or both (in turn)."})
    pretrain_num_train_epochs: float | None = field(
        default=None,
        metadata={"help": "With stage both: epochs of the pre-training stage (default num_train_epochs)."},
    )
    pretrain_learning_rate: float | None = field(
        default=None, metadata={"help": "With stage both: learning rate of the pre-training stage."}
    )
    pretrained_parts_dir: str | None = field(
        default=None, metadata={"help": "Task stage: load pre-trained loss parts (FT's paraphraser) from this folder."}
    )
    class_balanced_batches: bool = field(
        default=False, metadata={"help": "Batches with every class in equal numbers (CC's sampling)."}
    )

    def __post_init__(self):
        super().__post_init__()
        if self.stage not in FEATURE_SCRIPT_STAGES:
            raise ValueError(f"stage must be one of {FEATURE_SCRIPT_STAGES}, got {self.stage!r}")
        losses = parse_feature_losses(self.feature_losses)
        weights = self.weights()
        if self.feature_weights is not None and len(weights) != len(losses):
            raise ValueError(
                f"--feature_weights gives {len(weights)} weights for {len(losses)} feature losses "
                f"({self.feature_losses!r}); give one per loss"
            )
        if any(w < 0 for w in weights):
            raise ValueError(f"feature_weights must be >= 0, got {self.feature_weights!r}")
        unknown = _map_loss_names(self.layer_map) - set(MATCH_LOSSES)
        if unknown:
            raise ValueError(f"Layer map names unknown losses {sorted(unknown)}; registered: {sorted(MATCH_LOSSES)}")
        if not losses and not _map_loss_names(self.layer_map):
            raise ValueError(
                "Feature distillation needs losses: --feature_losses rkd,sp (applied to every match of --layer_map) "
                "or a JSON --layer_map whose matches name their loss"
            )

    def weights(self) -> list[float]:
        """The weight of each loss of `feature_losses`, in order."""
        if self.feature_weights is None:
            return [get_match_loss(name, feature or default_feature(name)).weight
                    for name, feature in parse_feature_losses(self.feature_losses)]  # fmt: skip
        try:
            return [float(w) for w in self.feature_weights.split(",")]
        except ValueError:
            raise ValueError(
                f"--feature_weights must be comma-separated numbers, got {self.feature_weights!r}"
            ) from None

    def loss_names(self) -> set[str]:
        """Every loss the run uses (from `feature_losses` and the layer map's own)."""
        return {name for name, _ in parse_feature_losses(self.feature_losses)} | _map_loss_names(self.layer_map)

    def has_pretraining(self) -> bool:
        """Whether some loss's paper trains something before the task stage (FitNet, AB, FT)."""
        return any(get_match_loss(name, feature).pretrain for name in self.loss_names()
                   for feature in MATCH_LOSSES[name])  # fmt: skip

    def split_stages(self) -> list[FeatureDistillationConfig]:
        """`[self]` for one stage; for `"both"`: the pre-training stage (output in `<output_dir>-pretrain`) and the
        task
        stage loading its parts, or the task stage alone when no loss pre-trains anything."""
        if self.stage != "both":
            return [self]
        if not self.has_pretraining():
            return [self.replaced(stage="task")]
        pretrain, task = self.two_stages(
            "pretrain", "task", self.pretrain_num_train_epochs, self.pretrain_learning_rate
        )
        return [pretrain.replaced(cache_teacher_logits=None), task.replaced(pretrained_parts_dir=pretrain.output_dir)]
