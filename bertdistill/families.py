"""Where each encoder family keeps its layers, attention and feed-forward modules: one registry that student
construction, attention-score recording and FFN hooks read, instead of BERT's attribute paths spread over modules.

A family is named by the `model_type`s it covers and gives attribute paths from the model's `base_model`: the layer
list, and from a layer the module that calls transformers' attention interface (where `bertdistill.attention` can
record pre-softmax scores; `None` with the reason where a family computes attention its own way) and the linear in
front of the FFN activation (`bertdistill.activations`; `None` where it is not one linear, as in ModernBERT's GLU).
Per-layer config fields (ModernBERT's `layer_types`) are rewritten when a student takes some of the teacher's layers.
Register more with [`register_family`].
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from torch import nn
from transformers import PretrainedConfig, PreTrainedModel


@dataclass(frozen=True)
class EncoderFamily:
    """Attribute paths of one family of encoders.

    Args:
        name (`str`): the family's name in messages.
        model_types (`tuple[str, ...]`): the configs' `model_type`s it covers.
        layers (`str`): dotted path from the base model to the `nn.ModuleList` of layers.
        attention (`str`, *optional*): dotted path from a layer to its self-attention module that goes through
            transformers' attention interface; `None`: scores cannot be recorded (see `no_scores`).
        ffn_input (`str`, *optional*): dotted path from a layer to the linear in front of the FFN activation.
        no_scores (`str`, *optional*): why attention scores cannot be recorded.
        per_layer_config (`tuple[str, ...]`, *optional*): config fields holding one entry per layer.
    """

    name: str
    model_types: tuple[str, ...]
    layers: str
    attention: str | None
    ffn_input: str | None
    no_scores: str = ""
    per_layer_config: tuple[str, ...] = ()

    def layer_key(self) -> re.Pattern:
        """Matches a state-dict key of a layer: (prefix, index, rest)."""
        return re.compile(rf"^(.*\b{re.escape(self.layers)}\.)(\d+)(\..*)$")


FAMILIES: dict[str, EncoderFamily] = {}


def register_family(family: EncoderFamily) -> EncoderFamily:
    """Make a family known; a model type belongs to one family only."""
    taken = [t for t in family.model_types if t in FAMILIES]
    if taken:
        raise ValueError(f"Model types {taken} already belong to the {FAMILIES[taken[0]].name} family")
    if family.attention is None and not family.no_scores:
        raise ValueError(f"Family {family.name}: say in no_scores why attention scores cannot be recorded")
    for model_type in family.model_types:
        FAMILIES[model_type] = family
    return family


def family_of(model_or_config: PreTrainedModel | PretrainedConfig) -> EncoderFamily:
    """The family of a model or config, by its `model_type`; an unknown one is refused with the supported list."""
    config = getattr(model_or_config, "config", model_or_config)
    model_type = getattr(config, "model_type", None)
    if model_type not in FAMILIES:
        raise ValueError(
            f"Encoder family of model_type {model_type!r} is not known to bertdistill; supported: "
            f"{', '.join(sorted(FAMILIES))} (bertdistill.families.register_family adds one)"
        )
    return FAMILIES[model_type]


def _path(root: nn.Module, dotted: str) -> nn.Module:
    for name in dotted.split("."):
        root = getattr(root, name)
    return root


def encoder_layers(model: PreTrainedModel) -> nn.ModuleList:
    """The model's transformer layers, in order."""
    family = family_of(model)
    return _path(getattr(model, "base_model", model), family.layers)


def attention_modules(model: PreTrainedModel) -> list[nn.Module]:
    """Each layer's self-attention module that calls the attention interface; refused with the reason and the way
    out for families that compute attention their own way."""
    family = family_of(model)
    if family.attention is None:
        raise ValueError(
            f"Pre-softmax attention scores cannot be recorded in {family.name}: {family.no_scores}. Distil without "
            "the attention loss (TinyBERT: --alpha_attn 0; no attention matches in a layer map)"
        )
    return [_path(layer, family.attention) for layer in encoder_layers(model)]


def ffn_input_modules(model: PreTrainedModel) -> list[nn.Module]:
    """Each layer's linear in front of the FFN activation; refused for families without one."""
    family = family_of(model)
    if family.ffn_input is None:
        raise ValueError(
            f"FFN pre-activations are not one linear's output in {family.name} (its FFN is gated); drop the ffn "
            "matches (loss 'ab') for this model"
        )
    return [_path(layer, family.ffn_input) for layer in encoder_layers(model)]


def resize_config(config: PretrainedConfig, layers: list[int] | int) -> None:
    """Set `config` (a copy of the teacher's) to a student's depth, in place: the chosen 0-based teacher `layers`
    (their per-layer fields follow them), or a number of layers for a freshly initialised student (per-layer fields
    repeat the teacher's pattern from its first layer)."""
    family = FAMILIES.get(getattr(config, "model_type", None))
    count = len(layers) if isinstance(layers, list) else layers
    for field in family.per_layer_config if family else ():
        values = getattr(config, field, None)
        if values is None:
            continue
        chosen = layers if isinstance(layers, list) else [i % len(values) for i in range(count)]
        setattr(config, field, [values[i] for i in chosen])
    config.num_hidden_layers = count


register_family(EncoderFamily(
    "BERT", ("bert", "roberta", "xlm-roberta", "electra", "camembert", "bertdistill_pruned_bert",
             "bertdistill_low_rank_bert", "bertdistill_multi_exit_bert"),
    "encoder.layer", "attention.self", "intermediate.dense",
))  # fmt: skip
register_family(EncoderFamily("DistilBERT", ("distilbert",), "transformer.layer", "attention", "ffn.lin1"))
register_family(EncoderFamily(
    "ModernBERT", ("modernbert",), "layers", "attn", None, per_layer_config=("layer_types",),
))  # fmt: skip
register_family(EncoderFamily(
    "MPNet", ("mpnet",), "encoder.layer", None, "intermediate.dense",
    no_scores="MPNet adds its relative position bias inside its own attention, not through transformers' attention "
    "interface",
))  # fmt: skip
register_family(EncoderFamily(
    "DeBERTa", ("deberta", "deberta-v2"), "encoder.layer", None, "intermediate.dense",
    no_scores="DeBERTa's disentangled attention (content and relative-position terms) is its own code, not "
    "transformers' attention interface",
))  # fmt: skip
