"""Where the parts DynaBERT reshapes sit in a transformers BERT: the encoder and its attention head size."""

from __future__ import annotations

from transformers import BertModel, PreTrainedModel


def bert_encoder(model: PreTrainedModel) -> BertModel:
    """The `BertModel` inside `model` (`model` itself or the base of a `*ForSequenceClassification`).

    Raises:
        `ValueError`: when the base model is not a `BertModel`; DynaBERT's slicing follows BERT's module names.
    """
    base = model.base_model
    if not isinstance(base, BertModel):
        raise ValueError(f"DynaBERT needs a BERT model (BertModel encoder), got {type(base).__name__}")
    return base


def attention_head_size(bert: BertModel) -> int:
    """The size of one attention head of `bert`, as its layers were built (a pruned BERT's need not be
    `hidden_size / num_attention_heads`)."""
    return bert.encoder.layer[0].attention.self.attention_head_size
