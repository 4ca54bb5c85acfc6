"""Early-exit BERT on the library side: the multi-exit classes registered with the Auto classes (their file,
`early_exit_bert.py`, ships with every saved checkpoint), and the sweep of exit thresholds that reports metric, mean
layers used and measured latency."""

from __future__ import annotations

from transformers import AutoConfig, AutoModelForSequenceClassification

from .early_exit_bert import (
    EXIT_POLICIES,
    MultiExitBertConfig,
    MultiExitBertForSequenceClassification,
    check_exit_policy,
    truncate_at_exit,
)

AutoConfig.register(MultiExitBertConfig.model_type, MultiExitBertConfig, exist_ok=True)
AutoModelForSequenceClassification.register(MultiExitBertConfig, MultiExitBertForSequenceClassification, exist_ok=True)
MultiExitBertConfig.register_for_auto_class()
MultiExitBertForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")

__all__ = [
    "EXIT_POLICIES",
    "MultiExitBertConfig",
    "MultiExitBertForSequenceClassification",
    "check_exit_policy",
    "truncate_at_exit",
]
