"""Compression, the second half of bertdistill: making a trained model smaller or faster without a new training
recipe of its own.

- `importance`: DynaBERT's head and neuron importance, and the rewiring that puts the most important first.
- `elastic`: the elastic BERT that runs one set of weights at any (width, depth) multiplier.
- `export`: a (width, depth) sub-network as a physically smaller checkpoint.
- `pruned_bert`: the checkpoint format of a sub-network with fewer heads (shipped next to its weights).
- `selection`: the sub-network to ship from a measured grid, under a parameter or latency budget.
- `quantization`: dynamic INT8 quantization in PyTorch for CPU inference.
- `vocabulary`: vocabulary pruning to the word pieces a corpus uses (stock checkpoint + tokenizer).
- `pruning`: structured pruning of heads and FFN neurons of any BERT classifier to a target.
- `low_rank` / `low_rank_bert`: truncated-SVD factorization of the linear layers (and word embeddings), and the
  checkpoint format that holds the factors.
- `sparsity`: unstructured sparsity during distillation (gradual magnitude and movement pruning).
- `qat`: quantization-aware distillation (fake-quantized student) and its INT8 conversion.
- `onnx_runtime`: ONNX export, ONNX Runtime INT8 (dynamic / static), evaluation and timing of ONNX models.
- `bert_layout`: where those parts sit in a transformers BERT.

`scripts/compress.py` chains them with distillation into one pipeline and reports the size / speed / metric front.
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
from .low_rank import factorization_report, factorize
from .low_rank_bert import LowRankBertConfig, LowRankBertForSequenceClassification, LowRankEmbedding, LowRankLinear
from .onnx_runtime import OnnxSequenceClassifier, evaluate_onnx, export_onnx, onnx_size, quantize_onnx
from .pruned_bert import PrunedBertConfig, PrunedBertForSequenceClassification, PrunedBertModel
from .pruning import StructuredPlan, apply_plan, count_plan_parameters, plan_pruning, prunable_parameters
from .qat import convert_qat, prepare_qat, quantize_for_deployment, set_fake_quant
from .quantization import quantize_dynamic_int8, serialized_size
from .selection import choose_setting, choose_within_budget
from .sparsity import SparsityCallback, add_sparsity_masks, cubic_sparsity, remove_sparsity_masks, set_sparsity
from .vocabulary import VocabularyPruning, count_unknown, prune_vocabulary, read_corpus_file, task_corpus

__all__ = [
    "DEFAULT_DEPTHS",
    "DEFAULT_WIDTHS",
    "ElasticBertLayer",
    "ElasticLinear",
    "Importance",
    "LowRankBertConfig",
    "LowRankBertForSequenceClassification",
    "LowRankEmbedding",
    "LowRankLinear",
    "OnnxSequenceClassifier",
    "PrunedBertConfig",
    "PrunedBertForSequenceClassification",
    "PrunedBertModel",
    "SparsityCallback",
    "StructuredPlan",
    "VocabularyPruning",
    "add_sparsity_masks",
    "apply_plan",
    "attention_head_size",
    "bert_encoder",
    "check_multiplier",
    "choose_setting",
    "choose_within_budget",
    "compute_importance",
    "convert_qat",
    "copy_full_model",
    "count_plan_parameters",
    "count_setting_parameters",
    "count_unknown",
    "cubic_sparsity",
    "elastic_setting",
    "evaluate_onnx",
    "export_onnx",
    "export_subnetwork",
    "factorization_report",
    "factorize",
    "get_elastic_setting",
    "kept_layers",
    "kept_width",
    "make_elastic",
    "onnx_size",
    "plan_pruning",
    "prepare_qat",
    "prunable_parameters",
    "prune_vocabulary",
    "quantize_dynamic_int8",
    "quantize_for_deployment",
    "quantize_onnx",
    "read_corpus_file",
    "remove_sparsity_masks",
    "rewire",
    "serialized_size",
    "set_elastic_setting",
    "set_fake_quant",
    "set_sparsity",
    "task_corpus",
]
