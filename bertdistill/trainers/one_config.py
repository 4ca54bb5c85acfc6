"""Configuration of on-the-fly native ensemble distillation, ONE (Lan et al. 2018, arXiv 1806.04606)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .distillation_config import DistillationTrainingConfig


@dataclass
class ONEConfig(DistillationTrainingConfig):
    r"""
    Configuration for [`ONETrainer`]: no teacher; the network's lower layers are shared by `one_branches` copies of
    its top layers (each with its own head), a gate weighs the branches into an ensemble, and the ensemble teaches
    every branch, in one training run.

    Loss: `sum over branches i of CE(z_i, y) + CE(z_e, y) + alpha_kd * T^2 * sum over i of KL(p_e || p_i)`, where
    `z_e = sum_i g_i z_i` is the gated ensemble (`g = softmax(W h)`, `h` the shared layers' [CLS] vector) and `p_e` its
    softened prediction, detached (the ensemble is the teacher). The paper's gate pools a CNN feature map through a
    fully connected layer, batch norm and ReLU; here one linear layer on the [CLS] vector. `T = 3` as in the paper.
    Regression: MSE to the labels and to the ensemble's output instead of CE and KL.

    Branch initialisation: the paper's branches are initialised independently. Here the branched top layers are
    pre-trained, so every branch starts as a copy of the network's own top layers and pooler; by default its
    classifier is a copy too (each branch begins as the very network it would be alone, and they diverge through
    dropout and the gate), while `one_new_heads=True` gives branches 2..M classifiers initialised afresh (BERT's
    normal(0, `initializer_range`) weights; the bias starts where the network's head does: 0 for a fresh head, the
    label mean for a fresh regression head, see `regression_head_init`), the paper's independence where the weights
    are not pre-trained.

    Args:
        one_branches (`int`, *optional*, defaults to `3`): branches (>= 2); the paper uses 3.
        one_shared_layers (`int`, *optional*): lower layers shared by the branches; default: all but the last (the
            paper branches the last block).
        alpha_ce (`float`, *optional*, defaults to `1.0`): weight of every branch's and (unless
            `one_ensemble_weight` is set) the ensemble's CE.
        alpha_kd (`float`, *optional*, defaults to `1.0`): weight of the ensemble's soft targets.
        temperature (`float`, *optional*, defaults to `3.0`): softmax temperature of the soft targets.
        one_new_heads (`bool`, *optional*, defaults to `False`): initialise the classifiers of branches 2..M afresh
            instead of copying the network's.
        one_ensemble_weight (`float`, *optional*): weight of the gated ensemble's CE (MSE for regression) on its
            own; unset, `alpha_ce` weighs it with the branches' CEs, as in the paper's loss. 0 leaves the gate
            untrained (only the ensemble's CE reaches it; the soft targets are detached), so the teacher mixes the
            branches by the gate's initial weights.
    """

    one_branches: int = field(default=3, metadata={"help": "Branches of the top layers (>= 2; paper: 3)."})
    one_shared_layers: int | None = field(
        default=None, metadata={"help": "Lower layers shared by the branches (default: all but the last)."}
    )
    alpha_ce: float = field(default=1.0, metadata={"help": "Weight of every branch's and the ensemble's CE."})
    alpha_kd: float = field(default=1.0, metadata={"help": "Weight of the ensemble's soft targets."})
    temperature: float = field(default=3.0, metadata={"help": "Softmax temperature of the soft targets (paper: 3)."})
    one_new_heads: bool = field(
        default=False, metadata={"help": "Initialise branches 2..M's classifiers afresh (default: copies)."}
    )
    one_ensemble_weight: float | None = field(
        default=None,
        metadata={"help": "Weight of the gated ensemble's CE (default: alpha_ce, the paper's equal weights)."},
    )

    def __post_init__(self):
        super().__post_init__()
        if self.one_branches < 2:
            raise ValueError(
                f"ONE needs at least 2 branches to make an ensemble, got one_branches={self.one_branches}"
            )
        if self.one_ensemble_weight is not None and self.one_ensemble_weight < 0:
            raise ValueError(f"one_ensemble_weight must be >= 0, got {self.one_ensemble_weight}")
        if self.one_shared_layers is not None and self.one_shared_layers < 0:
            raise ValueError(f"one_shared_layers must be >= 0, got {self.one_shared_layers}")

    @property
    def ensemble_ce_weight(self) -> float:
        """The gated ensemble's CE weight: `one_ensemble_weight`, or `alpha_ce` when unset."""
        return self.alpha_ce if self.one_ensemble_weight is None else self.one_ensemble_weight
