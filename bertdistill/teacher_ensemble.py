"""Several fine-tuned teachers behind one forward, for multi-teacher KD: their logits stacked `(B, K, C)`.

A teacher may read its own tokens (another tokenizer, e.g. a RoBERTa teacher for a BERT student): the batch then
carries its encoding of the same rows as `teacher<k>_input_ids`, `teacher<k>_attention_mask`, ... (`teacher_prefix`),
which [`MultiTokenizerCollator`] pads with that teacher's tokenizer; only the teacher reads them. Logit-only: the
teachers' logits are per row, whatever their tokens."""

from __future__ import annotations

import torch
from torch import nn
from transformers import DataCollatorWithPadding, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from .student import check_same_vocabulary


class TeacherEnsemble(nn.Module):
    """The teachers as one frozen module: `forward` returns `logits` of shape `(B, K, C)`, teacher k's in `[:, k]`.
    Its `config` is the first teacher's (label space and vocabulary, checked equal across teachers); `name_or_path`
    names them all. The teacher-logit cache stores the stacked logits like a single teacher's.

    Args:
        teachers (`list[PreTrainedModel]`): sequence classifiers with the same labels and vocabulary.
    """

    def __init__(self, teachers: list[PreTrainedModel], own_tokens: list[bool] | None = None):
        super().__init__()
        if len(teachers) < 2:
            raise ValueError(f"A teacher ensemble needs at least 2 teachers, got {len(teachers)}")
        own_tokens = list(own_tokens) if own_tokens is not None else [False] * len(teachers)
        if len(own_tokens) != len(teachers) or own_tokens[0]:
            raise ValueError("own_tokens: one flag per teacher, and the first teacher reads the student's tokens")
        first = teachers[0].config
        for teacher, own in zip(teachers[1:], own_tokens[1:]):
            if teacher.config.num_labels != first.num_labels:
                raise ValueError(
                    f"Teachers predict different label sets ({first.num_labels} vs {teacher.config.num_labels}): "
                    "fine-tune every teacher on the same task"
                )
            if not own:
                check_same_vocabulary(first, teacher.config)
        self.teachers = nn.ModuleList(teachers)
        self.own_tokens = own_tokens
        self.config = first
        self.name_or_path = " + ".join(t.name_or_path or "?" for t in teachers)

    def input_columns(self) -> list[str]:
        """The batch columns of the teachers that read their own tokens."""
        return [teacher_prefix(k) + c for k, own in enumerate(self.own_tokens) if own for c in MODEL_INPUTS]

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, **kwargs) -> SequenceClassifierOutput:
        shared = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        logits = []
        for k, (teacher, own) in enumerate(zip(self.teachers, self.own_tokens)):
            if own:
                prefix = teacher_prefix(k)
                if prefix + "input_ids" not in kwargs:
                    raise ValueError(
                        f"Teacher {k} reads its own tokens but the batch has no {prefix}input_ids: tokenize the "
                        "training set with its tokenizer too (glue_run.tokenize_split(..., teacher_tokenizers=...))"
                    )
                inputs = {c: kwargs.get(prefix + c) for c in MODEL_INPUTS}
            else:
                inputs = shared
            logits.append(teacher(**{c: v for c, v in inputs.items() if v is not None}).logits)
        return SequenceClassifierOutput(logits=torch.stack(logits, dim=1))


MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def teacher_prefix(k: int) -> str:
    """The column prefix of teacher k's own encoding."""
    return f"teacher{k}_"


class MultiTokenizerCollator:
    """Pads a batch whose rows carry several encodings: the student's (`input_ids`, ...) with `tokenizer`, and each
    `<prefix>input_ids`, ... with its own tokenizer; other columns (labels, cached logits, row ids) as
    `DataCollatorWithPadding` does.

    Args:
        tokenizer: the student's tokenizer.
        teacher_tokenizers (`dict[str, tokenizer]`): `{prefix: tokenizer}` of the teachers that read their own tokens.
    """

    def __init__(self, tokenizer, teacher_tokenizers: dict):
        self.base = DataCollatorWithPadding(tokenizer)
        self.others = {prefix: DataCollatorWithPadding(t) for prefix, t in teacher_tokenizers.items()}

    def __call__(self, features: list[dict]) -> dict:
        own = {prefix: [{k[len(prefix) :]: v for k, v in f.items() if k.startswith(prefix)} for f in features]
               for prefix in self.others}  # fmt: skip
        rest = [{k: v for k, v in f.items() if not any(k.startswith(p) for p in self.others)} for f in features]
        batch = dict(self.base(rest))
        for prefix, rows in own.items():
            if any(rows):  # absent once the teachers' logits are cached (their encodings are then dropped)
                batch.update({prefix + k: v for k, v in self.others[prefix](rows).items()})
        return batch
