"""Configuration of data-free distillation in embedding space (DAFL, Chen et al. 2019, arXiv 1904.01186)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..data_free import DATA_FREE_OUTPUTS, DATA_FREE_REDUCTIONS
from .distillation_config import DistillationTrainingConfig


@dataclass
class DataFreeConfig(DistillationTrainingConfig):
    r"""
    Configuration for [`DataFreeTrainer`]: no training rows; a generator (`bertdistill.data_free`) learns to make
    inputs the fixed teacher answers confidently, strongly and with balanced classes, and the student learns the
    teacher's soft targets on those inputs.

    Loss per step: generator `L_oh + dafl_alpha * L_a + dafl_beta * L_ie` (logged `loss_oh`, `loss_act`,
    `loss_ie`) + student `alpha_kd * T^2 * KL(teacher || student)` on the same generated batch (`loss_kd`). Both
    update in the same step (the paper alternates a generator and a student update per batch): the generator's loss
    runs the teacher with gradients to the generator only, the student reads the generated batch detached. A
    regression teacher (with `dafl_target_range`): generator `L_range + dafl_alpha * L_a + dafl_beta * L_spread`,
    student `alpha_kd * MSE(student, teacher)`.

    Args:
        dafl_output (`str`, *optional*, defaults to `"free"`): the generator's output space, `"free"` or `"vocab"`
            (see `bertdistill.data_free`; a student narrower than the teacher needs `"vocab"`).
        dafl_length (`int`, *optional*, defaults to `32`): positions per generated row, [CLS] and [SEP] included.
        dafl_alpha (`float`, *optional*, defaults to `0.1`), dafl_beta (`float`, *optional*, defaults to `5.0`): the
            activation and information-entropy (for a regression teacher: spread) weights (the paper's CIFAR values).
        dafl_reductions (`str`, *optional*, defaults to `"paper"`): `"paper"` (the formulas as printed: `L_a` the
            rows' L1 norm, entropies in nats) or `"reference"` (the authors' code: `L_a` the mean absolute element,
            `H` times smaller, entropies with `log10`); see `bertdistill.data_free`.
        dafl_rows_per_epoch (`int`, *optional*, defaults to `3200`): generated rows that make an "epoch".
        generator_learning_rate (`float`, *optional*, defaults to `1e-3`): the generator's learning rate (its own
            optimizer group).
        dafl_temperature (`float`, *optional*, defaults to `1.0`): softmax temperature of the "vocab" mixture.
        dafl_target_range (`list[float]`, *optional*): `low high`, the target range of a regression teacher (STS-B:
            `0 5`; `distill_glue.py` takes it from the task). With a regression teacher the generator's class-based
            terms become `L_range` (logged `loss_range`, weight 1) and `L_spread` (`loss_spread`, weight
            `dafl_beta`) over this range, and the student's KD is the MSE to the teacher's predictions (see
            `bertdistill.data_free`). Refused for a classification teacher.
        dafl_bins (`int`, *optional*, defaults to `10`): bins of the range in `L_spread`.
        alpha_kd (`float`, *optional*, defaults to `1.0`), temperature (`float`, *optional*, defaults to `1.0`): the
            student's KD weight and temperature. `alpha_ce` must stay 0: there are no labels.
    """

    dafl_output: str = field(default="free", metadata={"help": "free or vocab (mixtures of word embeddings)."})
    dafl_length: int = field(default=32, metadata={"help": "Positions per generated row, [CLS] and [SEP] included."})
    dafl_alpha: float = field(default=0.1, metadata={"help": "Weight of the activation loss."})
    dafl_beta: float = field(
        default=5.0, metadata={"help": "Weight of the information-entropy loss (the spread loss for regression)."}
    )
    dafl_reductions: str = field(
        default="paper", metadata={"help": "paper (L_a a row's L1 norm, nats) or reference (the authors' code)."}
    )
    dafl_rows_per_epoch: int = field(default=3200, metadata={"help": "Generated rows per epoch."})
    generator_learning_rate: float = field(default=1e-3, metadata={"help": "The generator's learning rate."})
    dafl_temperature: float = field(default=1.0, metadata={"help": "Temperature of the vocabulary mixture."})
    dafl_target_range: list[float] | None = field(
        default=None, metadata={"help": "low high: a regression teacher's target range (STS-B: 0 5)."}
    )
    dafl_bins: int = field(default=10, metadata={"help": "Bins of the target range in the spread loss."})
    alpha_ce: float = field(default=0.0, metadata={"help": "Must be 0: data-free training has no labels."})
    alpha_kd: float = field(default=1.0, metadata={"help": "Weight of the student's KD on generated inputs."})
    temperature: float = field(default=1.0, metadata={"help": "Softmax temperature of the student's KD."})

    def __post_init__(self):
        super().__post_init__()
        if self.alpha_ce != 0:
            raise ValueError("Data-free distillation has no labels: alpha_ce must be 0")
        if self.dafl_output not in DATA_FREE_OUTPUTS:
            raise ValueError(f"dafl_output must be one of {', '.join(DATA_FREE_OUTPUTS)}, got {self.dafl_output!r}")
        if self.dafl_reductions not in DATA_FREE_REDUCTIONS:
            raise ValueError(
                f"dafl_reductions must be one of {', '.join(DATA_FREE_REDUCTIONS)}, got {self.dafl_reductions!r}"
            )
        if self.dafl_length < 3:
            raise ValueError(f"dafl_length must be >= 3 ([CLS], a token, [SEP]), got {self.dafl_length}")
        if self.dafl_rows_per_epoch < 1 or self.generator_learning_rate <= 0 or self.dafl_temperature <= 0:
            raise ValueError("dafl_rows_per_epoch, generator_learning_rate and dafl_temperature must be positive")
        if self.dafl_target_range is not None:
            if len(self.dafl_target_range) != 2 or not self.dafl_target_range[0] < self.dafl_target_range[1]:
                raise ValueError(f"dafl_target_range takes low high with low < high, got {self.dafl_target_range}")
            self.dafl_target_range = [float(v) for v in self.dafl_target_range]
        if self.dafl_bins < 2:
            raise ValueError(f"dafl_bins must be >= 2, got {self.dafl_bins}")
