"""The two registries of distillation losses, in one place.

`LOSSES`: every loss function by name. `MATCH_LOSSES`: the losses a `LayerMatch` can name in its `loss` field, each
registered for the features it reads (`"hidden"`, `"attention"`, `"ffn"`) as a [`MatchLoss`], which says besides the
function how the loss treats widths, whether it compares the examples of a batch, whether it reads a pair of layers,
which trainable parts it needs and whether its paper trains something before the task stage.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..layer_maps import FEATURES

LOSSES: dict[str, Callable[..., torch.Tensor]] = {}


def register_loss(name: str, fn: Callable[..., torch.Tensor] | None = None):
    """Register `fn` under `name` (usable as a decorator); a name can be registered once."""

    def add(f: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        if name in LOSSES:
            raise ValueError(f"Loss {name!r} is already registered")
        LOSSES[name] = f
        return f

    return add(fn) if fn is not None else add


def get_loss(name: str) -> Callable[..., torch.Tensor]:
    """The loss registered under `name`; unknown names raise with the list of valid ones."""
    if name not in LOSSES:
        raise ValueError(f"Unknown loss {name!r}. Registered losses: {', '.join(sorted(LOSSES))}")
    return LOSSES[name]


MatchLossFn = Callable[..., torch.Tensor]
# How a match loss treats a student whose feature width differs from the teacher's.
WIDTH_POLICIES = ("same", "project", "any", "parts")
# What a loss's paper trains before the task stage: the student with this loss alone (FitNet's hint stage, AB's
# initialisation), or the loss's own parts on the teacher's features (FT's paraphraser).
PRETRAIN_KINDS = ("student", "parts")


@dataclass(frozen=True)
class MatchLoss:
    """A loss that layer matches can name, for one feature.

    Args:
        name (`str`): the name in `LayerMatch.loss` and `--feature_losses`.
        feature (`str`): what it reads: `"hidden"` token states `(B, L, H)`, `"attention"` pre-softmax scores
            `(B, h, L, L)`, `"ffn"` feed-forward pre-activations `(B, L, I)`.
        fn (`Callable`): `fn(student, teacher, mask) -> scalar`, or `fn(student, teacher, mask, parts)` when
            `build_parts` is set. `mask` is `(B, L)` (1 = real token) or `None`; for a `layer_pair` loss, student and
            teacher are `(start, end)` tuples of features.
        width (`str`, *optional*, defaults to `"same"`): `"same"`: compares equal widths, a narrower student goes
            through a learned projection; `"project"`: always through a projection (FitNet's regressor); `"any"`:
            compares any widths (relations between examples, attention maps), projected only when the match asks
            (`proj=True`); `"parts"`: its own parts map the widths (`proj` is refused).
        relational (`bool`, *optional*): compares the examples of a batch with each other, so it needs >= 2 rows.
        layer_pair (`bool`, *optional*): reads two layers per model (FSP's flow between them): the match's
            `student_end_layer` and `teacher_end_layer` are required.
        build_parts (`Callable`, *optional*): `build_parts(student_width, teacher_width) -> nn.Module`, the loss's
            trainable parts (regressor, variances, paraphraser, translator, connector), kept in the trained model's
            `extras`.
        pretrain (`str`, *optional*): `"student"` (the paper first trains the student with this loss alone, then
            without it) or `"parts"` (the paper first trains the parts on the teacher's features with `pretrain_fn`).
        pretrain_fn (`Callable`, *optional*): for `pretrain="parts"`: `pretrain_fn(teacher, mask, parts) -> scalar`.
            Where no stage pre-trains the parts, it is added to the loss so that they train alongside.
        weight (`float`, *optional*, defaults to 1.0): the default weight (the paper's, or the reference benchmark's
            where the paper gives none), used when `--feature_weights` does not say.
        paper (`str`, *optional*): the source, e.g. `"arXiv 1904.05068"`.
    """

    name: str
    feature: str
    fn: MatchLossFn
    width: str = "same"
    relational: bool = False
    layer_pair: bool = False
    build_parts: Callable[[int, int], nn.Module] | None = None
    pretrain: str | None = None
    pretrain_fn: Callable[..., torch.Tensor] | None = None
    weight: float = 1.0
    paper: str = ""

    def __post_init__(self):
        if self.feature not in FEATURES:
            raise ValueError(f"Unknown feature {self.feature!r}; valid: {', '.join(FEATURES)}")
        if self.width not in WIDTH_POLICIES:
            raise ValueError(f"width must be one of {WIDTH_POLICIES}, got {self.width!r}")
        if (self.width == "parts") != (self.build_parts is not None):
            raise ValueError(f"Match loss {self.name!r}: width='parts' and build_parts go together")
        if self.pretrain is not None and self.pretrain not in PRETRAIN_KINDS:
            raise ValueError(f"pretrain must be one of {PRETRAIN_KINDS} or None, got {self.pretrain!r}")
        if (self.pretrain == "parts") != (self.pretrain_fn is not None):
            raise ValueError(f"Match loss {self.name!r}: pretrain='parts' and pretrain_fn go together")

    def __call__(self, student, teacher, mask, parts: nn.Module | None = None) -> torch.Tensor:
        if self.build_parts is not None:
            return self.fn(student, teacher, mask, parts)
        return self.fn(student, teacher, mask)


MATCH_LOSSES: dict[str, dict[str, MatchLoss]] = {}


def register_match_loss(name: str, feature: str, fn: MatchLossFn | None = None, **spec):
    """Register `fn` as the loss `name` of `feature` matches (usable as a decorator); `spec` takes the other fields
    of [`MatchLoss`]. A (name, feature) pair can be registered once."""
    if feature not in FEATURES:
        raise ValueError(f"Unknown feature {feature!r}; valid: {', '.join(FEATURES)}")

    def add(f: MatchLossFn) -> MatchLossFn:
        by_feature = MATCH_LOSSES.setdefault(name, {})
        if feature in by_feature:
            raise ValueError(f"Match loss {name!r} is already registered for {feature} matches")
        by_feature[feature] = MatchLoss(name, feature, f, **spec)
        return f

    return add(fn) if fn is not None else add


def get_match_loss(name: str, feature: str) -> MatchLoss:
    """The [`MatchLoss`] `name` for `feature` matches (callable as `loss(student, teacher, mask[, parts])`); unknown
    pairs raise with the names valid for that feature, and the features that name is registered for."""
    by_feature = MATCH_LOSSES.get(name, {})
    if feature not in by_feature:
        valid = sorted(n for n, features in MATCH_LOSSES.items() if feature in features)
        hint = f" ({name!r} reads {' or '.join(sorted(by_feature))} matches)" if by_feature else ""
        raise ValueError(f"Unknown loss {name!r} for {feature} matches{hint}. Valid: {', '.join(valid)}")
    return by_feature[feature]


def default_feature(name: str) -> str:
    """The feature a loss reads when `--feature_losses` names it without a layer map saying which: `"hidden"` if it
    is registered for hidden states, else the one feature it has."""
    if name not in MATCH_LOSSES:
        raise ValueError(f"Unknown match loss {name!r}. Registered: {', '.join(sorted(MATCH_LOSSES))}")
    features = MATCH_LOSSES[name]
    return "hidden" if "hidden" in features else next(iter(features))
