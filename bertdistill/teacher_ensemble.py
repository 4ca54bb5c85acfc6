"""Several fine-tuned teachers behind one forward, for multi-teacher KD: their logits stacked `(B, K, C)`."""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from .student import check_same_vocabulary


class TeacherEnsemble(nn.Module):
    """The teachers as one frozen module: `forward` returns `logits` of shape `(B, K, C)`, teacher k's in `[:, k]`.
    Its `config` is the first teacher's (label space and vocabulary, checked equal across teachers); `name_or_path`
    names them all. The teacher-logit cache stores the stacked logits like a single teacher's.

    Args:
        teachers (`list[PreTrainedModel]`): sequence classifiers with the same labels and vocabulary.
    """

    def __init__(self, teachers: list[PreTrainedModel]):
        super().__init__()
        if len(teachers) < 2:
            raise ValueError(f"A teacher ensemble needs at least 2 teachers, got {len(teachers)}")
        first = teachers[0].config
        for teacher in teachers[1:]:
            if teacher.config.num_labels != first.num_labels:
                raise ValueError(
                    f"Teachers predict different label sets ({first.num_labels} vs {teacher.config.num_labels}): "
                    "fine-tune every teacher on the same task"
                )
            check_same_vocabulary(first, teacher.config)
        self.teachers = nn.ModuleList(teachers)
        self.config = first
        self.name_or_path = " + ".join(t.name_or_path or "?" for t in teachers)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, **kwargs) -> SequenceClassifierOutput:
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        return SequenceClassifierOutput(logits=torch.stack([t(**inputs).logits for t in self.teachers], dim=1))
