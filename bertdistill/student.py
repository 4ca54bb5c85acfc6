"""Build a student from a teacher: take some of its layers, or start from a config; always the teacher's vocabulary."""

from __future__ import annotations

import copy
import os

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    PretrainedConfig,
    PreTrainedModel,
)

from .families import family_of, resize_config

# Copied from the teacher so that a student predicts the same label space with the same names.
_HEAD_ATTRIBUTES = ("num_labels", "id2label", "label2id", "problem_type", "finetuning_task")


def default_student_layers(num_teacher_layers: int, num_student_layers: int) -> list[int]:
    """Teacher layers (0-based) that initialise a student of `num_student_layers` layers by default ("uniform").

    The default spreads the student evenly over the teacher and always keeps the top layer: student layer `i` takes
    teacher layer `(i + 1) * L // N - 1` (6 -> 3: layers 1, 3, 5; 12 -> 6: 1, 3, 5, 7, 9, 11). Each student layer then
    starts from the teacher layer that TinyBERT's uniform map g(m) = m * L / N pairs it with, and the classifier keeps
    reading the representation it was trained on.
    """
    return select_teacher_layers(num_teacher_layers, num_student_layers, "uniform")


def select_teacher_layers(num_teacher_layers: int, num_student_layers: int, selection: str = "uniform") -> list[int]:
    """Teacher layers (0-based) for a student of `num_student_layers` layers, by a named rule.

    - `"uniform"`: evenly spread, top layer kept (`(i + 1) * L // N - 1`; 6 -> 3: 1, 3, 5).
    - `"first"`: the bottom N layers (Patient-KD's initialisation; 6 -> 3: 0, 1, 2).
    - `"alternate"`: one layer out of two from the bottom (DistilBERT; 6 -> 3: 0, 2, 4). Hugging Face's released
      DistilBERT took 0, 2, 4, 7, 9, 11 of BERT-base: pass that with `--student_layers` to reproduce it exactly.
    """
    if selection not in LAYER_SELECTIONS:
        raise ValueError(f"Unknown layer selection {selection!r}; valid: {', '.join(LAYER_SELECTIONS)}")
    if not 1 <= num_student_layers <= num_teacher_layers:
        raise ValueError(
            f"student_num_layers={num_student_layers} is out of range: the teacher has {num_teacher_layers} layers, "
            f"so choose 1..{num_teacher_layers}"
        )
    if selection == "first":
        return list(range(num_student_layers))
    if selection == "alternate":
        if 2 * num_student_layers - 1 > num_teacher_layers:
            raise ValueError(
                f"'alternate' takes every other teacher layer: {num_student_layers} student layers need at least "
                f"{2 * num_student_layers - 1} teacher layers, the teacher has {num_teacher_layers}"
            )
        return [2 * i for i in range(num_student_layers)]
    return [(i + 1) * num_teacher_layers // num_student_layers - 1 for i in range(num_student_layers)]


LAYER_SELECTIONS = ("uniform", "first", "alternate")


def parse_layer_list(value: str | list[int], num_teacher_layers: int) -> list[int]:
    """Parse `"1,3,5"` (0-based teacher layers, strictly increasing) and check it against the teacher's depth."""
    if isinstance(value, str):
        try:
            layers = [int(part) for part in value.split(",") if part.strip()]
        except ValueError:
            raise ValueError(f"student_layers={value!r} must be comma-separated integers, e.g. '1,3,5'") from None
    else:
        layers = list(value)
    if not layers:
        raise ValueError("student_layers is empty; give at least one teacher layer, e.g. '1,3,5'")
    bad = [layer for layer in layers if not 0 <= layer < num_teacher_layers]
    if bad:
        raise ValueError(
            f"student_layers {bad} out of range: the teacher has {num_teacher_layers} layers, numbered 0.."
            f"{num_teacher_layers - 1}"
        )
    if any(b <= a for a, b in zip(layers, layers[1:])):
        raise ValueError(f"student_layers {layers} must be strictly increasing")
    return layers


def check_same_vocabulary(teacher_config: PretrainedConfig, student_config: PretrainedConfig) -> None:
    """Distillation feeds the same token ids to both models: refuse a student whose vocabulary differs."""
    if teacher_config.vocab_size != student_config.vocab_size:
        raise ValueError(
            f"Teacher and student vocabularies differ (vocab_size {teacher_config.vocab_size} vs "
            f"{student_config.vocab_size}). Both models read the same token ids: give the student the teacher's "
            "vocab_size and tokenizer."
        )


def _auto_class_like(teacher: PreTrainedModel):
    """The Auto class with the teacher's head: sequence classification (task distillation), masked LM (DistilBERT's
    general distillation) or none (TinyBERT's general distillation from a bare encoder)."""
    name = type(teacher).__name__
    if "ForSequenceClassification" in name:
        return AutoModelForSequenceClassification
    return AutoModelForMaskedLM if "ForMaskedLM" in name else AutoModel


def _copy_head_attributes(source: PretrainedConfig, target: PretrainedConfig) -> None:
    for name in _HEAD_ATTRIBUTES:
        if hasattr(source, name):
            setattr(target, name, copy.deepcopy(getattr(source, name)))


def student_from_teacher_layers(teacher: PreTrainedModel, layers: list[int]) -> PreTrainedModel:
    """A student with the teacher's width and the given teacher layers, in order.

    Embeddings, the chosen encoder layers, the pooler and the classification head are copied; everything else in the
    config (including the label names) is the teacher's.

    Args:
        teacher (`PreTrainedModel`): a `*ForSequenceClassification` model of a family `bertdistill.families` knows
            (BERT, RoBERTa, ELECTRA, DistilBERT, ModernBERT, MPNet, DeBERTa, ...).
        layers (`list[int]`): 0-based teacher layers; the student has `len(layers)` layers.
    """
    layers = parse_layer_list(layers, teacher.config.num_hidden_layers)
    layer_key = family_of(teacher).layer_key()
    config = copy.deepcopy(teacher.config)
    resize_config(config, layers)  # per-layer fields (ModernBERT's attention types) follow the chosen layers
    student = type(teacher)(config)

    teacher_state = teacher.state_dict()
    state = {}
    for key in student.state_dict():
        match = layer_key.match(key)
        source = f"{match[1]}{layers[int(match[2])]}{match[3]}" if match else key
        state[key] = teacher_state[source].detach().clone()
    student.load_state_dict(state, strict=True)
    return student


def student_from_config(teacher: PreTrainedModel, config: str | os.PathLike | PretrainedConfig) -> PreTrainedModel:
    """A randomly initialised student from a config (`config.json` path or object), with the teacher's label head."""
    if not isinstance(config, PretrainedConfig):
        if not os.path.exists(config):
            raise FileNotFoundError(f"student_config not found: {config}")
        config = AutoConfig.from_pretrained(config)
    config = copy.deepcopy(config)
    check_same_vocabulary(teacher.config, config)
    _copy_head_attributes(teacher.config, config)
    return _auto_class_like(teacher).from_config(config)


def student_from_pretrained(teacher: PreTrainedModel, path: str | os.PathLike) -> PreTrainedModel:
    """A student from a pre-trained checkpoint (e.g. a general-distilled model), with a fresh head for the task."""
    config = AutoConfig.from_pretrained(path)
    check_same_vocabulary(teacher.config, config)
    _copy_head_attributes(teacher.config, config)
    return _auto_class_like(teacher).from_pretrained(path, config=config)


def build_student(
    teacher: PreTrainedModel,
    num_layers: int | None = None,
    layers: str | list[int] | None = None,
    config: str | os.PathLike | PretrainedConfig | None = None,
    pretrained: str | os.PathLike | None = None,
    selection: str = "uniform",
) -> PreTrainedModel:
    """Build a student by exactly one of four routes.

    Args:
        teacher (`PreTrainedModel`): the fine-tuned teacher (`*ForSequenceClassification`).
        num_layers (`int`, *optional*): take this many teacher layers, chosen by `selection`.
        layers (`str` or `list[int]`, *optional*): take these 0-based teacher layers, e.g. `"1,3,5"`.
        config (`str` or `PretrainedConfig`, *optional*): random init from this config (same vocabulary).
        pretrained (`str`, *optional*): load this checkpoint (same vocabulary), new task head if it has none.
        selection (`str`, *optional*, defaults to `"uniform"`): how `num_layers` picks teacher layers, see
            [`select_teacher_layers`].
    """
    chosen = [
        name
        for name, value in (
            ("student_num_layers", num_layers),
            ("student_layers", layers),
            ("student_config", config),
            ("student_model_name_or_path", pretrained),
        )
        if value is not None
    ]
    if len(chosen) != 1:
        raise ValueError(
            "Give exactly one of --student_num_layers, --student_layers, --student_config, "
            f"--student_model_name_or_path (got {chosen or 'none'})"
        )
    if num_layers is not None:
        layers = select_teacher_layers(teacher.config.num_hidden_layers, num_layers, selection)
        return student_from_teacher_layers(teacher, layers)
    if layers is not None:
        return student_from_teacher_layers(teacher, parse_layer_list(layers, teacher.config.num_hidden_layers))
    if config is not None:
        return student_from_config(teacher, config)
    return student_from_pretrained(teacher, pretrained)
