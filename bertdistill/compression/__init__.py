"""Compression, the second half of bertdistill: making a trained model smaller or faster without a new training
recipe of its own.

- `importance`: DynaBERT's head and neuron importance, and the rewiring that puts the most important first.
- `elastic`: the elastic BERT that runs one set of weights at any (width, depth) multiplier.
- `export`: a (width, depth) sub-network as a physically smaller checkpoint.
- `pruned_bert`: the checkpoint format of a sub-network with fewer heads (shipped next to its weights).
- `selection`: the sub-network to ship from a measured grid, under a parameter or latency budget.
- `quantization`: dynamic INT8 quantization for CPU inference.
- `bert_layout`: where those parts sit in a transformers BERT.
"""

from .bert_layout import attention_head_size, bert_encoder
from .elastic import (
    DEFAULT_DEPTHS,
    DEFAULT_WIDTHS,
    ElasticBertLayer,
    ElasticLinear,
    check_multiplier,
    copy_full_model,
    elastic_setting,
    get_elastic_setting,
    kept_layers,
    kept_width,
    make_elastic,
    set_elastic_setting,
)
from .export import count_setting_parameters, export_subnetwork
from .importance import Importance, compute_importance, rewire
from .pruned_bert import PrunedBertConfig, PrunedBertForSequenceClassification, PrunedBertModel
from .quantization import quantize_dynamic_int8, serialized_size
from .selection import choose_setting

__all__ = [
    "DEFAULT_DEPTHS",
    "DEFAULT_WIDTHS",
    "ElasticBertLayer",
    "ElasticLinear",
    "Importance",
    "PrunedBertConfig",
    "PrunedBertForSequenceClassification",
    "PrunedBertModel",
    "attention_head_size",
    "bert_encoder",
    "check_multiplier",
    "choose_setting",
    "compute_importance",
    "copy_full_model",
    "count_setting_parameters",
    "elastic_setting",
    "export_subnetwork",
    "get_elastic_setting",
    "kept_layers",
    "kept_width",
    "make_elastic",
    "quantize_dynamic_int8",
    "rewire",
    "serialized_size",
    "set_elastic_setting",
]
