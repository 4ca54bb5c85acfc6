"""The one loop over layer matches that every method's intermediate losses go through.

A method gives a list of [`LayerMatch`]es (or, when its pairs change during training as DynaBERT's do, a function
returning the current list) and its default loss per feature; [`layer_match_term`] turns them into one weighted
[`LossTerm`]. Every field of a match is honoured the same way for every method:

- `feature`: `"hidden"` reads `output_hidden_states[layer]` `(B, L, H)`; `"attention"` reads the layer's pre-softmax
  attention scores `(B, h, L, L)` recorded by `bertdistill.attention` (the trainer records exactly the layers that
  attention matches name, on both models).
- `loss`: a name of `bertdistill.losses.MATCH_LOSSES` for that feature; `None` takes the method's default.
- `weight`: multiplies the match's loss.
- `proj`: the student's states go through a learned linear map to the teacher's width first. A hidden match whose
  widths differ is projected whatever `proj` says, since nothing else can compare them.

The projections live in the trained model's `extras` (see `bertdistill.modeling`), so they are optimised,
checkpointed and kept in sync by DDP.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from transformers import PretrainedConfig

from .layer_maps import LayerMatch
from .losses import get_match_loss
from .modeling import LossTerm

SHARED_PROJECTION = "proj"


def projection_key(match: LayerMatch, shared: bool = False) -> str:
    """Name of the projection a hidden match uses in `extras`: one shared by every match, or one per match."""
    return SHARED_PROJECTION if shared else f"proj_{match.student_layer}_{match.teacher_layer}"


def is_projected(match: LayerMatch, student_width: int, teacher_width: int) -> bool:
    return match.feature == "hidden" and (match.proj or student_width != teacher_width)


def check_matches(
    matches: Sequence[LayerMatch],
    default_losses: dict[str, str],
    student_config: PretrainedConfig,
    teacher_config: PretrainedConfig,
    method: str,
) -> None:
    """Refuse, before training, a match whose loss is unknown for its feature, a feature the method has no loss
    for, or attention matches between models with different head counts."""
    for match in matches:
        if match.proj and match.feature != "hidden":
            raise ValueError(f"{match}: proj applies to hidden-state matches only")
        if match.feature not in default_losses:
            raise ValueError(
                f"{match}: {method} has no loss for {match.feature} matches (it takes "
                f"{', '.join(default_losses)} matches); remove them from the layer map"
            )
        try:
            get_match_loss(match.loss or default_losses[match.feature], match.feature)
        except ValueError as error:
            raise ValueError(f"{match}: {error}") from None
        if match.feature == "attention" and student_config.num_attention_heads != teacher_config.num_attention_heads:
            raise ValueError(
                f"{match}: attention losses compare heads one to one, but the teacher has "
                f"{teacher_config.num_attention_heads} heads and the student {student_config.num_attention_heads}. "
                "Give the student as many heads (--student_num_attention_heads) or drop the attention matches "
                "(TinyBERT: --alpha_attn 0)"
            )


def build_projections(
    matches: Sequence[LayerMatch], student_width: int, teacher_width: int, shared: bool = False
) -> nn.ModuleDict:
    """`nn.Linear(student_width, teacher_width)` for every hidden match that [`is_projected`], one per key of
    [`projection_key`]."""
    projections = nn.ModuleDict()
    for match in matches:
        key = projection_key(match, shared)
        if is_projected(match, student_width, teacher_width) and key not in projections:
            projections[key] = nn.Linear(student_width, teacher_width)
    return projections


def match_feature(outputs, match: LayerMatch, side: str) -> torch.Tensor:
    """The tensor `match` reads from one model's outputs (`side` is `"student"` or `"teacher"`). Attentions come as
    `{layer: scores}` (see `DistillationModel.forward`)."""
    layer = match.student_layer if side == "student" else match.teacher_layer
    if match.feature == "hidden":
        return outputs.hidden_states[layer]
    return outputs.attentions[layer]


def match_losses(
    matches: Sequence[LayerMatch],
    student_outputs,
    teacher_outputs,
    batch: dict[str, torch.Tensor | None],
    extras: nn.ModuleDict,
    default_losses: dict[str, str],
    shared_projection: bool = False,
) -> list[torch.Tensor]:
    """Each match's weighted loss, in order: the loop every method's intermediate terms share."""
    mask = batch.get("attention_mask")
    values = []
    for match in matches:
        student = match_feature(student_outputs, match, "student")
        teacher = match_feature(teacher_outputs, match, "teacher")
        if is_projected(match, student.shape[-1], teacher.shape[-1]):
            student = extras[projection_key(match, shared_projection)](student)
        loss = get_match_loss(match.loss or default_losses[match.feature], match.feature)
        values.append(match.weight * loss(student, teacher, mask))
    return values


def layer_match_term(
    name: str,
    weight: float,
    matches: Sequence[LayerMatch] | Callable[[], Sequence[LayerMatch]],
    default_losses: dict[str, str],
    reduction: str = "sum",
    scale: float = 1.0,
    shared_projection: bool = False,
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
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    current = matches if callable(matches) else (lambda: matches)

    def fn(s, t, batch, extras):
        values = match_losses(current(), s, t, batch, extras, default_losses, shared_projection)
        total = torch.stack(values).sum() if reduction == "sum" else torch.stack(values).mean()
        return scale * total

    static = [] if callable(matches) else list(matches)
    features = {m.feature for m in static}
    return LossTerm(
        name,
        weight,
        fn,
        needs_hidden_states=callable(matches) or "hidden" in features,
        teacher_hidden_layers=None
        if callable(matches)
        else tuple(sorted({m.teacher_layer for m in static if m.feature == "hidden"})),
        teacher_attention_layers=tuple(sorted({m.teacher_layer for m in static if m.feature == "attention"})),
        student_attention_layers=tuple(sorted({m.student_layer for m in static if m.feature == "attention"})),
    )
