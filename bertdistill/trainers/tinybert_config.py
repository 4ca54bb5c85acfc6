"""Configuration of TinyBERT task distillation (Jiao et al. 2020, arXiv 1909.10351)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .distillation_config import REGRESSION_TARGETS, DistillationTrainingConfig

STAGES = ("intermediate", "prediction")
SCRIPT_STAGES = (*STAGES, "both")
ATTENTION_LOSSES = ("mse", "kl")


@dataclass
class TinyBertConfig(DistillationTrainingConfig):
    r"""
    Configuration for [`TinyBertTrainer`], one stage of TinyBERT's task distillation.

    `stage="intermediate"`: `alpha_emb * MSE(E_S W_e, E_T) + alpha_hidden * sum_m MSE(H_S,m W_h, H_T,g(m))
    + alpha_attn * sum_m MSE(A_S,m, A_T,g(m))`, with `A` the pre-softmax attention scores (masked positions zero) and
    `W` learnable projections when the student is narrower. `stage="prediction"`: `alpha_kd * soft cross-entropy
    (temperature t, no t^2; MSE for regression) + alpha_ce * task loss`.

    Args:
        stage (`str`, *optional*, defaults to `"intermediate"`): `"intermediate"`, `"prediction"`, or `"both"`
            (distill_glue.py runs the intermediate stage, then the prediction stage; see [`split_stages`]).
        intermediate_num_train_epochs (`float`, *optional*): epochs of the intermediate stage of `"both"` (default:
            `num_train_epochs`).
        intermediate_learning_rate (`float`, *optional*): learning rate of the intermediate stage of `"both"`
            (default: `learning_rate`).
        layer_map (`str`, *optional*, defaults to `"uniform"`): g(m) = m * N / M; any preset, `"s:t,..."` pairs or
            JSON. The embeddings 0 -> 0 are added unless the map matches student layer 0 itself, and every mapped
            transformer layer gets an attention match unless the (JSON) map lists attention matches explicitly.
            Each match's `loss`, `weight` and `proj` are honoured (see `bertdistill.layer_matching`).
        alpha_emb (`float`, *optional*, defaults to 1.0): weight of the embedding loss.
        alpha_hidden (`float`, *optional*, defaults to 1.0): weight of the hidden-state loss.
        alpha_attn (`float`, *optional*, defaults to 1.0): weight of the attention loss.
        attention_loss (`str`, *optional*, defaults to `"mse"`): `"mse"` on scores (the paper) or `"kl"` on
            probabilities.
        shared_projection (`bool`, *optional*, defaults to `True`): one projection for every layer (TinyBERT's code)
            or one per matched layer.
        alpha_ce (`float`, *optional*, defaults to 0.0) / alpha_kd (defaults to 1.0) / temperature (defaults to 1.0):
            the prediction stage's weights; TinyBERT uses the soft loss only.
        regression_target (`str`, *optional*, defaults to `"teacher"`): the prediction stage's target on a
            regression task (STS-B): `"teacher"` (MSE against the teacher's outputs, distillation as for classes) or
            `"gold"` (MSE against the gold scores, what TinyBERT's code does).
    """

    stage: str = field(default="intermediate", metadata={"help": "intermediate, prediction or both (in turn)."})
    intermediate_num_train_epochs: float | None = field(
        default=None,
        metadata={"help": "With stage both: epochs of the intermediate stage (default num_train_epochs)."},
    )
    intermediate_learning_rate: float | None = field(
        default=None, metadata={"help": "With stage both: learning rate of the intermediate stage."}
    )
    layer_map: str = field(default="uniform", metadata={"help": "uniform (g(m) = m N / M), a preset, pairs or JSON."})
    alpha_emb: float = field(default=1.0, metadata={"help": "Weight of the embedding loss."})
    alpha_hidden: float = field(default=1.0, metadata={"help": "Weight of the hidden-state loss."})
    alpha_attn: float = field(default=1.0, metadata={"help": "Weight of the attention loss."})
    attention_loss: str = field(default="mse", metadata={"help": "mse on pre-softmax scores, or kl on probabilities."})
    shared_projection: bool = field(default=True, metadata={"help": "One projection for all layers, or one each."})
    alpha_ce: float = field(default=0.0, metadata={"help": "Prediction stage: weight of the task loss."})
    alpha_kd: float = field(default=1.0, metadata={"help": "Prediction stage: weight of the soft cross-entropy."})
    temperature: float = field(default=1.0, metadata={"help": "Prediction stage: softmax temperature."})
    regression_target: str = field(
        default="teacher",
        metadata={"help": "Prediction stage, regression tasks: MSE to the 'teacher' outputs or to the 'gold' scores."},
    )

    def __post_init__(self):
        super().__post_init__()
        if self.stage not in SCRIPT_STAGES:
            raise ValueError(f"stage must be one of {SCRIPT_STAGES}, got {self.stage!r}")
        if self.regression_target not in REGRESSION_TARGETS:
            raise ValueError(f"regression_target must be one of {REGRESSION_TARGETS}, got {self.regression_target!r}")
        if self.attention_loss not in ATTENTION_LOSSES:
            raise ValueError(f"attention_loss must be one of {ATTENTION_LOSSES}, got {self.attention_loss!r}")
        for name in ("alpha_emb", "alpha_hidden", "alpha_attn"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    def split_stages(self) -> list[TinyBertConfig]:
        """The configs to run in turn: `[self]` for one stage; for `"both"` the intermediate stage (its own epochs and
        learning rate, output in `<output_dir>-intermediate`) and then the prediction stage in `output_dir`.
        `cache_teacher_logits` applies to the prediction stage only: the intermediate one, which reads hidden states,
        leaves it to bertdistill (off), and `cache_teacher_outputs` applies to the intermediate stage only."""
        if self.stage != "both":
            return [self]
        intermediate, prediction = self.two_stages(
            "intermediate", "prediction", self.intermediate_num_train_epochs, self.intermediate_learning_rate
        )
        return [intermediate.replaced(cache_teacher_logits=None), prediction.replaced(cache_teacher_outputs=None)]
