"""Which student layer learns from which teacher layer: `LayerMatch` as plain data, named presets, parsing.

Layer numbers follow `output_hidden_states`: 0 is the embedding output, k (1-based) the output of the k-th
transformer layer. For attentions and FFN pre-activations, k is the k-th layer's (0 is not valid).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass

FEATURES = ("hidden", "attention", "ffn")


@dataclass(frozen=True)
class LayerMatch:
    """One student layer learning from one teacher layer.

    Args:
        teacher_layer (`int`): teacher layer, 0 = embeddings, k = output of layer k.
        student_layer (`int`): student layer, same numbering.
        feature (`str`, *optional*, defaults to `"hidden"`): `"hidden"` (hidden states), `"attention"` (pre-softmax
            attention scores) or `"ffn"` (the feed-forward layer's pre-activations, the input of its GELU).
        loss (`str`, *optional*): the loss for this match, a name of `bertdistill.losses.MATCH_LOSSES` valid for its
            feature (hidden: `mse`, `cosine`, `pkd`, `fitnet`, `at`, `sp`, `rkd`, `rkd_distance`, `rkd_angle`, `pkt`,
            `cc`, `nst`, `fsp`, `vid`, `ft`; attention: `mse`, `kl`, `at`; ffn: `ab`); `None` lets the method choose
            (PKD: `pkd`, the normalised [CLS] distance; DistilBERT: `cosine`; TinyBERT and DynaBERT: `mse`).
        weight (`float`, *optional*, defaults to 1.0): multiplier of this match within its loss term.
        proj (`bool`, *optional*, defaults to `False`): learn a linear map from the student's states to the teacher's
            width before the loss (hidden matches; matches between different widths are projected unless their
            loss compares any widths or maps them with its own parts, see `bertdistill.losses.MatchLoss.width`).
        student_end_layer (`int`, *optional*): with `teacher_end_layer`, the second layer of a loss that reads a
            pair of layers (FSP's flow from `student_layer` to `student_end_layer`); other losses refuse them.
        teacher_end_layer (`int`, *optional*): the teacher's second layer of the pair.
    """

    teacher_layer: int
    student_layer: int
    feature: str = "hidden"
    loss: str | None = None
    weight: float = 1.0
    proj: bool = False
    student_end_layer: int | None = None
    teacher_end_layer: int | None = None

    @property
    def is_pair(self) -> bool:
        return self.student_end_layer is not None or self.teacher_end_layer is not None


PRESETS: dict[str, Callable[[int, int], list[LayerMatch]]] = {}


def register_preset(name: str, build: Callable[[int, int], list[LayerMatch]]) -> None:
    """Register `build(num_teacher_layers, num_student_layers) -> list[LayerMatch]` under `name` (once)."""
    if name in PRESETS:
        raise ValueError(f"Layer-map preset {name!r} is already registered")
    PRESETS[name] = build


def _check_divisible(name: str, teacher: int, student: int) -> int:
    if teacher % student:
        raise ValueError(
            f"Layer map {name!r} needs the teacher depth to be a multiple of the student depth "
            f"(got {teacher} and {student}); give a custom --layer_map such as '1:2,2:4'"
        )
    return teacher // student


def uniform(teacher: int, student: int) -> list[LayerMatch]:
    """TinyBERT's g(m) = m * N / M for every student layer m = 1..M (embeddings are matched separately)."""
    step = _check_divisible("uniform", teacher, student)
    return [LayerMatch(m * step, m) for m in range(1, student + 1)]


def pkd_skip(teacher: int, student: int) -> list[LayerMatch]:
    """Patient-KD skip: student layers 1..M-1 learn from every (N/M)-th teacher layer (12 -> 6: 2, 4, 6, 8, 10).

    The student's last layer is left to the soft-target loss on the logits, as in the paper."""
    step = _check_divisible("pkd-skip", teacher, student)
    return [LayerMatch(m * step, m) for m in range(1, student)]


def pkd_last(teacher: int, student: int) -> list[LayerMatch]:
    """Patient-KD last: student layers 1..M-1 learn from the teacher's last layers but its top one (12 -> 6: 7..11)."""
    return [LayerMatch(teacher - student + m, m) for m in range(1, student)]


def one_of_two(teacher: int, student: int) -> list[LayerMatch]:
    """DistilBERT's "one out of two": student layer m learns from teacher layer 2m - 1, the layer it was initialised
    from when the student takes teacher layers 0, 2, 4, ... (0-based), so 6 -> 3 pairs 1:1, 2:3, 3:5."""
    if 2 * student > teacher + 1:
        raise ValueError(f"Layer map 'one-of-two' needs at least {2 * student - 1} teacher layers, got {teacher}")
    return [LayerMatch(2 * m - 1, m) for m in range(1, student + 1)]


def last_layer(teacher: int, student: int) -> list[LayerMatch]:
    """Only the top layers: student M learns from teacher N (DistilBERT's default cosine target)."""
    return [LayerMatch(teacher, student)]


for _name, _build in (("uniform", uniform), ("pkd-skip", pkd_skip), ("pkd-last", pkd_last),
                      ("one-of-two", one_of_two), ("last", last_layer)):  # fmt: skip
    register_preset(_name, _build)


def _from_string(spec: str) -> list[LayerMatch]:
    """`"1:2,2:4"` -> student 1 from teacher 2, student 2 from teacher 4 (hidden states)."""
    matches = []
    for part in spec.split(","):
        try:
            student, teacher = (int(x) for x in part.split(":"))
        except ValueError:
            raise ValueError(
                f"Cannot read layer map {spec!r}: use a preset ({', '.join(PRESETS)}), pairs 'student:teacher' "
                "separated by commas such as '1:2,2:4,3:6', or a JSON list of LayerMatch fields"
            ) from None
        matches.append(LayerMatch(teacher_layer=teacher, student_layer=student))
    return matches


# Short names a JSON layer map may use for the layer fields.
JSON_ALIASES = {"student": "student_layer", "teacher": "teacher_layer", "student_end": "student_end_layer",
                "teacher_end": "teacher_end_layer"}  # fmt: skip


def _from_json(items: list) -> list[LayerMatch]:
    fields = set(LayerMatch.__dataclass_fields__) | set(JSON_ALIASES)
    matches = []
    for item in items:
        if isinstance(item, dict):
            doubled = [k for k in JSON_ALIASES if k in item and JSON_ALIASES[k] in item]
            if doubled:
                raise ValueError(f"Layer match {item!r} gives both {doubled[0]!r} and {JSON_ALIASES[doubled[0]]!r}")
            item = {JSON_ALIASES.get(k, k): v for k, v in item.items()}
        unknown = set(item) - fields if isinstance(item, dict) else None
        if unknown is None or unknown:
            raise ValueError(
                f"Layer match {item!r}: expected an object with fields {sorted(fields)}"
                + (f" (unknown: {sorted(unknown)})" if unknown else "")
            )
        matches.append(LayerMatch(**item))
    return matches


def resolve_layer_map(
    spec: str | list[LayerMatch] | list[dict], num_teacher_layers: int, num_student_layers: int
) -> list[LayerMatch]:
    """A validated layer map from a preset name, a `"s:t,..."` string, JSON text, a JSON file or a list.

    Raises `ValueError` naming the offending match when a layer is out of range for the real depths, a feature is
    unknown, or an attention match uses layer 0.
    """
    if isinstance(spec, str):
        text = spec.strip()
        if text in PRESETS:
            matches = PRESETS[text](num_teacher_layers, num_student_layers)
        elif text.endswith(".json") and os.path.isfile(text):
            with open(text, encoding="utf-8") as f:
                matches = _from_json(json.load(f))
        elif text.startswith("["):
            matches = _from_json(json.loads(text))
        else:
            matches = _from_string(text)
    else:
        matches = [m if isinstance(m, LayerMatch) else LayerMatch(**m) for m in spec]

    if not matches:
        raise ValueError(f"Layer map {spec!r} is empty")
    for match in matches:
        if match.feature not in FEATURES:
            raise ValueError(f"{match}: feature must be one of {FEATURES}")
        lowest = 0 if match.feature == "hidden" else 1
        if match.is_pair and (match.student_end_layer is None or match.teacher_end_layer is None):
            raise ValueError(f"{match}: a layer pair needs both student_end_layer and teacher_end_layer")
        for side, layer, depth in (("teacher", match.teacher_layer, num_teacher_layers),
                                   ("student", match.student_layer, num_student_layers),
                                   ("teacher", match.teacher_end_layer, num_teacher_layers),
                                   ("student", match.student_end_layer, num_student_layers)):  # fmt: skip
            if layer is not None and not lowest <= layer <= depth:
                raise ValueError(
                    f"{match}: {side}_layer {layer} is out of range; the {side} has {depth} layers, so "
                    f"{match.feature} layers are numbered {lowest}..{depth}"
                    + (" (0 = embeddings)" if lowest == 0 else "")
                )
    return matches


def resolve_hidden_state_map(spec, teacher_config, student_config, method: str) -> list[LayerMatch]:
    """A layer map for methods whose own intermediate loss reads hidden states (Patient-KD, DistilBERT): a match of
    another feature must name its loss (e.g. `"loss": "at"` on attention, `"ab"` on ffn). A student narrower than
    the teacher is compared through learned projections (see `bertdistill.layer_matching`)."""
    matches = resolve_layer_map(spec, teacher_config.num_hidden_layers, student_config.num_hidden_layers)
    for match in matches:
        if match.feature != "hidden" and match.loss is None:
            raise ValueError(
                f'{match}: {method} matches hidden states only, unless a match names its loss (e.g. "loss": "at" '
                'for attention, "ab" for ffn); remove it or name one (--method tinybert distils attention scores)'
            )
    return matches


def describe(matches: list[LayerMatch]) -> str:
    """Short text for logs and model cards, e.g. `"hidden 1<-2, 2<-4"` (student <- teacher)."""

    def side(start: int, end: int | None) -> str:
        return str(start) if end is None else f"{start}..{end}"

    return ", ".join(
        f"{m.feature} {side(m.student_layer, m.student_end_layer)}<-{side(m.teacher_layer, m.teacher_end_layer)}"
        + (f" ({m.loss})" if m.loss else "")
        for m in matches
    )


def to_json(matches: list[LayerMatch]) -> str:
    return json.dumps([asdict(m) for m in matches])
