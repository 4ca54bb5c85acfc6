"""Kept for compatibility: the pruned-BERT checkpoint format now lives in `bertdistill.compression.pruned_bert`."""

from .compression.pruned_bert import PrunedBertConfig, PrunedBertForSequenceClassification, PrunedBertModel

__all__ = ["PrunedBertConfig", "PrunedBertForSequenceClassification", "PrunedBertModel"]
