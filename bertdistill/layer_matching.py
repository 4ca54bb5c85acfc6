"""The one loop over layer matches that every method's intermediate losses go through.

A method gives a list of [`LayerMatch`]es (or, when its pairs change during training as DynaBERT's do, a function
returning the current list) and its default loss per feature; [`layer_match_term`] turns them into one weighted
[`LossTerm`]. Every field of a match is honoured the same way for every method:

- `feature`: `"hidden"` reads `output_hidden_states[layer]` `(B, L, H)`; `"attention"` reads the layer's pre-softmax
  attention scores `(B, h, L, L)` recorded by `bertdistill.attention`; `"ffn"` the layer's FFN pre-activations
  `(B, L, I)` recorded by `bertdistill.activations` (the trainer records exactly the layers that matches name, on
  both models).
- `loss`: a name of `bertdistill.losses.MATCH_LOSSES` for that feature; `None` takes the method's default.
- `weight`: multiplies the match's loss.
- `proj`: the student's states go through a learned linear map to the teacher's width first. A hidden match whose
  widths differ is projected whatever `proj` says when its loss compares equal widths (`MatchLoss.width == "same"`);
  FitNet's loss is always projected (its regressor); losses between examples or attention maps compare any widths;
  VID, FT and AB map the widths with their own parts.
- `student_end_layer` / `teacher_end_layer`: the second layer of a loss that reads a layer pair (FSP); the loss gets
  `(start, end)` tuples.

The projections and the losses' parts live in the trained model's `extras` (see `bertdistill.modeling`), so they are
optimised, checkpointed and kept in sync by DDP.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from transformers import PretrainedConfig

from .layer_maps import LayerMatch
from .losses import MatchLoss, get_match_loss
from .modeling import LossTerm

SHARED_PROJECTION = "proj"
# How a layer-match term treats losses whose parts the paper pre-trains on the teacher (FT's paraphraser):
# "joint": the parts train alongside (their pre-training loss is added), for methods with no stage for it;
# "pretrained": the parts were pre-trained and stay fixed; "pretrain_parts": only the parts' pre-training loss.
PARTS_MODES = ("joint", "pretrained", "pretrain_parts")


def projection_key(match: LayerMatch, shared: bool = False) -> str:
    """Name of the projection a hidden match uses in `extras`: one shared by every match, or one per match."""
    return SHARED_PROJECTION if shared else f"proj_{match.student_layer}_{match.teacher_layer}"


def parts_key(match: LayerMatch, loss: MatchLoss) -> str:
    """Name of a match's loss parts in `extras`."""
    pair = f"_{match.student_end_layer}_{match.teacher_end_layer}" if match.is_pair else ""
    return f"{loss.name}_{match.feature}_{match.student_layer}_{match.teacher_layer}{pair}"


def match_loss(match: LayerMatch, default_losses: dict[str, str]) -> MatchLoss:
    """The registered loss a match uses: its own, or the method's default for its feature."""
    return get_match_loss(match.loss or default_losses[match.feature], match.feature)


def is_projected(match: LayerMatch, student_width: int, teacher_width: int, loss: MatchLoss | None = None) -> bool:
    """Whether the student's feature goes through a projection (see the module docstring)."""
    if match.feature != "hidden":
        return False
    policy = loss.width if loss is not None else "same"
    if policy == "project":
        return True
    if policy == "same":
        return match.proj or student_width != teacher_width
    return match.proj and policy == "any"


def feature_width(config: PretrainedConfig, feature: str) -> int:
    """The last dimension of a feature: the hidden size, or the FFN size for `"ffn"`."""
    return config.intermediate_size if feature == "ffn" else config.hidden_size


def check_matches(
    matches: Sequence[LayerMatch],
    default_losses: dict[str, str],
    student_config: PretrainedConfig,
    teacher_config: PretrainedConfig,
    method: str,
    batch_size: int | None = None,
) -> None:
    """Refuse, before training, a match whose loss is unknown for its feature, a feature the method has no loss
    for, a layer pair given to a loss that reads one layer (or missing for one that reads two), `proj` where it
    cannot apply, attention matches between models with different head counts for a loss that compares heads one to
    one, and a loss between examples with batches of one."""
    for match in matches:
        if match.loss is None and match.feature not in default_losses:
            raise ValueError(
                f"{match}: {method} has no default loss for {match.feature} matches (it takes "
                f"{', '.join(default_losses)} matches); name the match's loss or remove it from the layer map"
            )
        try:
            loss = match_loss(match, default_losses)
        except ValueError as error:
            raise ValueError(f"{match}: {error}") from None
        if match.proj and match.feature != "hidden":
            raise ValueError(f"{match}: proj applies to hidden-state matches only")
        if match.proj and loss.width == "parts":
            raise ValueError(f"{match}: loss {loss.name!r} maps the widths with its own parts; remove proj")
        if loss.layer_pair and not match.is_pair:
            raise ValueError(
                f"{match}: loss {loss.name!r} reads a pair of layers per model; give student_end_layer and "
                "teacher_end_layer (its flow runs from student_layer to student_end_layer)"
            )
        if match.is_pair and not loss.layer_pair:
            raise ValueError(
                f"{match}: loss {loss.name!r} reads one layer; remove student_end_layer/teacher_end_layer"
            )
        if (match.feature == "attention" and loss.width == "same"
                and student_config.num_attention_heads != teacher_config.num_attention_heads):  # fmt: skip
            raise ValueError(
                f"{match}: attention losses compare heads one to one, but the teacher has "
                f"{teacher_config.num_attention_heads} heads and the student {student_config.num_attention_heads}. "
                "Give the student as many heads (--student_num_attention_heads), use loss 'at' (it averages the "
                "heads), or drop the attention matches (TinyBERT: --alpha_attn 0)"
            )
        if loss.relational and batch_size is not None and batch_size < 2:
            raise ValueError(
                f"{match}: loss {loss.name!r} compares the examples of a batch with each other and needs batches of "
                f"at least 2 rows; the per-device batch size is {batch_size}"
            )


def build_match_modules(
    matches: Sequence[LayerMatch],
    student_config: PretrainedConfig,
    teacher_config: PretrainedConfig,
    default_losses: dict[str, str] | None = None,
    shared: bool = False,
) -> nn.ModuleDict:
    """The trainable modules of `matches`: `nn.Linear(student_width, teacher_width)` for every hidden match that
    [`is_projected`] (one per key of [`projection_key`]), and each match's loss parts (key [`parts_key`])."""
    default_losses = default_losses or {}
    modules = nn.ModuleDict()
    for match in matches:
        loss = match_loss(match, default_losses) if match.loss or match.feature in default_losses else None
        student_width = feature_width(student_config, match.feature)
        teacher_width = feature_width(teacher_config, match.feature)
        key = projection_key(match, shared)
        if is_projected(match, student_width, teacher_width, loss) and key not in modules:
            modules[key] = nn.Linear(student_width, teacher_width)
        if loss is not None and loss.build_parts is not None:
            modules[parts_key(match, loss)] = loss.build_parts(student_width, teacher_width)
    return modules


def match_feature(outputs, match: LayerMatch, side: str):
    """The tensor `match` reads from one model's outputs (`side` is `"student"` or `"teacher"`), a `(start, end)`
    tuple for a layer pair. Attentions come as `{layer: scores}` (see `DistillationModel.forward`), FFN
    pre-activations as `outputs.ffn = {layer: tensor}`."""
    layer = match.student_layer if side == "student" else match.teacher_layer
    end = match.student_end_layer if side == "student" else match.teacher_end_layer

    def read(k: int) -> torch.Tensor:
        if match.feature == "hidden":
            return outputs.hidden_states[k]
        if match.feature == "ffn":
            return outputs.ffn[k]
        return outputs.attentions[k]

    return read(layer) if end is None else (read(layer), read(end))


def match_losses(
    matches: Sequence[LayerMatch],
    student_outputs,
    teacher_outputs,
    batch: dict[str, torch.Tensor | None],
    extras: nn.ModuleDict,
    default_losses: dict[str, str],
    shared_projection: bool = False,
    parts_mode: str = "joint",
) -> list[torch.Tensor]:
    """Each match's weighted loss, in order: the loop every method's intermediate terms share."""
    mask = batch.get("attention_mask")
    values = []
    for match in matches:
        loss = match_loss(match, default_losses)
        parts = extras[parts_key(match, loss)] if loss.build_parts is not None else None
        teacher = match_feature(teacher_outputs, match, "teacher")
        if parts_mode == "pretrain_parts":
            if loss.pretrain == "parts":
                values.append(match.weight * loss.pretrain_fn(teacher, mask, parts))
            continue
        student = match_feature(student_outputs, match, "student")
        first = student[0] if isinstance(student, tuple) else student
        second = teacher[0] if isinstance(teacher, tuple) else teacher
        if is_projected(match, first.shape[-1], second.shape[-1], loss):
            project = extras[projection_key(match, shared_projection)]
            student = tuple(map(project, student)) if isinstance(student, tuple) else project(student)
        value = loss(student, teacher, mask, parts)
        if parts_mode == "joint" and loss.pretrain == "parts":
            value = value + loss.pretrain_fn(teacher, mask, parts)
        values.append(match.weight * value)
    return values


def layer_match_term(
    name: str,
    weight: float,
    matches: Sequence[LayerMatch] | Callable[[], Sequence[LayerMatch]],
    default_losses: dict[str, str],
    reduction: str = "sum",
    scale: float = 1.0,
    shared_projection: bool = False,
    parts_mode: str = "joint",
) -> LossTerm:
    """A [`LossTerm`] over `matches`: `scale * (sum or mean of the matches' weighted losses)`.

    Args:
        name (`str`): logged as `loss_<name>`.
        weight (`float`): the term's weight in the total loss.
        matches (`list[LayerMatch]` or `Callable`): the matches, or a function giving the current ones (read at each
            forward; the teacher layers it reads are then unknown in advance).
        default_losses (`dict[str, str]`): feature -> loss name for matches whose `loss` is `None`.
        reduction (`str`, *optional*, defaults to `"sum"`): how the matches combine, `"sum"` or `"mean"`.
        scale (`float`, *optional*, defaults to 1.0): a constant factor (Patient-KD's paper reduction).
        shared_projection (`bool`, *optional*): projected matches share one projection (TinyBERT's code).
        parts_mode (`str`, *optional*, defaults to `"joint"`): for losses whose paper pre-trains their parts on the
            teacher (FT): `"joint"` trains them alongside, `"pretrained"` keeps them fixed, `"pretrain_parts"`
            computes their pre-training loss only (see `PARTS_MODES`).
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    if parts_mode not in PARTS_MODES:
        raise ValueError(f"parts_mode must be one of {PARTS_MODES}, got {parts_mode!r}")
    current = matches if callable(matches) else (lambda: matches)

    def fn(s, t, batch, extras):
        values = match_losses(current(), s, t, batch, extras, default_losses, shared_projection, parts_mode)
        total = torch.stack(values).sum() if reduction == "sum" else torch.stack(values).mean()
        return scale * total

    static = [] if callable(matches) else list(matches)
    student_only = parts_mode == "pretrain_parts"

    def layers(feature: str, side: str) -> tuple[int, ...]:
        found = set()
        for m in static:
            if m.feature == feature:
                pair = (
                    (m.teacher_layer, m.teacher_end_layer)
                    if side == "teacher"
                    else (m.student_layer, m.student_end_layer)
                )
                found.update(k for k in pair if k is not None)
        return tuple(sorted(found))

    return LossTerm(
        name,
        weight,
        fn,
        needs_hidden_states=callable(matches) or any(m.feature == "hidden" for m in static),
        teacher_hidden_layers=None if callable(matches) else layers("hidden", "teacher"),
        teacher_attention_layers=layers("attention", "teacher"),
        student_attention_layers=() if student_only else layers("attention", "student"),
        teacher_ffn_layers=layers("ffn", "teacher"),
        student_ffn_layers=() if student_only else layers("ffn", "student"),
    )
