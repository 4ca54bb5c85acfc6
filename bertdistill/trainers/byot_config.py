"""Configuration of BYOT self-distillation (Zhang et al. 2019, arXiv 1905.08094, "Be Your Own Teacher")."""

from __future__ import annotations

from dataclasses import dataclass, field

from .distillation_config import DistillationTrainingConfig


def parse_exit_layers(value: str | None, num_layers: int) -> list[int] | None:
    """`"1,2,3"` -> `[1, 2, 3]`, `"every:2"` -> every 2nd layer (and the last), `None` -> every layer."""
    if value is None:
        return None
    value = value.strip()
    if value.startswith("every:"):
        step = int(value.split(":", 1)[1])
        if step < 1:
            raise ValueError(f"exit_layers 'every:k' needs k >= 1, got {value!r}")
        layers = list(range(step, num_layers + 1, step))
        return layers if num_layers in layers else [*layers, num_layers]
    try:
        return [int(k) for k in value.split(",") if k.strip()]
    except ValueError as error:
        raise ValueError(f"exit_layers takes '1,2,3' or 'every:k', got {value!r}") from error


@dataclass
class BYOTConfig(DistillationTrainingConfig):
    r"""
    Configuration for [`BYOTTrainer`]: no teacher; the network's deepest classifier teaches classifiers after its
    shallower layers, in one training run.

    Loss: `CE(q_C, y) + sum over the shallow exits i of [(1 - alpha) * CE(q_i, y) + alpha * SCE(q_i, q_C; T) +
    lambda * MSE(F_i, F_C)]`, where `q_C` and `F_C` are the deepest exit's logits and pooled [CLS] vector, detached
    (the deepest classifier is the teacher, it does not learn from the others), `SCE` the soft cross-entropy at
    temperature `T`, `MSE` the mean over rows and features. Regression (STS-B): MSE to the labels and to the deepest
    output instead of CE and SCE.

    Paper and authors' code: the paper writes the soft term as a KL divergence and adds the feature hint; the authors'
    final code (ArchipLab-LinfengZhang/pytorch-self-distillation-final) uses the soft cross-entropy without a `T^2`
    factor (what this does: the KL differs from it by the teacher's entropy, a constant, so the gradients are equal),
    `alpha = 0.3`, `T = 3`, and no feature term (`byot_feature_weight 0`). All layers have the same width in BERT, so
    the paper's bottleneck layers that bring features to the deepest one's shape are not needed.

    Args:
        exit_layers (`str`, *optional*): the 1-based layers with a classifier: `"1,2,3"`, `"every:2"`, or every layer
            (default). The last layer always has one.
        byot_alpha (`float`, *optional*, defaults to `0.3`): the shallow exits' weight on the deepest one's soft
            targets (`1 - alpha` on the labels); in [0, 1].
        temperature (`float`, *optional*, defaults to `3.0`): softmax temperature of the soft targets.
        byot_feature_weight (`float`, *optional*, defaults to `0.03`): `lambda`, weight of the feature hint (the MSE
            between an exit's pooled vector and the deepest one's); 0 follows the authors' final code.
        alpha_ce, alpha_kd: not used (the exits' weights are `byot_alpha`'s); must be left at their defaults.
    """

    exit_layers: str | None = field(default=None, metadata={"help": "Layers with a classifier: '1,2,3' or 'every:k'."})
    byot_alpha: float = field(
        default=0.3, metadata={"help": "Shallow exits' weight on the deepest exit's soft targets."}
    )
    temperature: float = field(default=3.0, metadata={"help": "Softmax temperature of the soft targets (authors: 3)."})
    byot_feature_weight: float = field(
        default=0.03, metadata={"help": "lambda: weight of the feature hint (0 = the authors' final code)."}
    )

    def __post_init__(self):
        super().__post_init__()
        if not 0 <= self.byot_alpha <= 1:
            raise ValueError(f"byot_alpha must be in [0, 1], got {self.byot_alpha}")
        if self.byot_feature_weight < 0:
            raise ValueError(f"byot_feature_weight must be >= 0, got {self.byot_feature_weight}")
        if (self.alpha_ce, self.alpha_kd) != (0.5, 0.5):
            raise ValueError(
                "BYOT weighs its terms with byot_alpha (the exits' labels and soft targets) and byot_feature_weight; "
                "alpha_ce and alpha_kd are not used: leave them out"
            )
