"""Configuration of deep mutual learning, DML (Zhang et al. 2018, arXiv 1706.00384)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .distillation_config import DistillationTrainingConfig


def parse_peer_layers(value: str | None) -> list[list[int]]:
    """`"1,3,5;0,2,4"` -> `[[1, 3, 5], [0, 2, 4]]` (each peer's 0-based layers); `None` -> `[]`."""
    if not value:
        return []
    try:
        return [[int(k) for k in group.split(",") if k.strip()] for group in value.split(";") if group.strip()]
    except ValueError as error:
        raise ValueError(
            f"dml_peer_layers takes ';'-separated layer lists such as '1,3,5;0,2,4', got {value!r}"
        ) from error


@dataclass
class DMLConfig(DistillationTrainingConfig):
    r"""
    Configuration for [`DMLTrainer`]: K >= 2 networks (the student and its peers) trained together, each learning
    from the labels and from the others' predictions; optionally also from a fixed teacher.

    Each network `k`'s loss: `alpha_ce * CE(z_k, y) + dml_weight * 1/(K-1) * sum over l != k of T^2 * KL(p_l || p_k)
    (+ alpha_kd * T^2 * KL(p_teacher || p_k) with a teacher)`, the peers' predictions `p_l` detached; the total is the
    sum over the networks, one optimizer step for all of them. Regression: MSE between outputs instead of the KL.

    Paper and code: the paper's Algorithm 1 updates the networks in turn within a step, each against the others'
    predictions recomputed after the previous update; here they are updated simultaneously from one forward (what
    most implementations do, one Trainer step), so `max_grad_norm` clips the networks' gradients jointly. `T = 1`,
    both weights 1, as in the paper.

    The peers: `dml_peer_layers` (`"1,3,5;0,2,4"`: each peer takes these 0-based layers of the student's source, the
    teacher or `--student_layers_from`), `dml_peers_from` (comma-separated checkpoints, e.g. other students), or
    `dml_num_peers` copies of the student with freshly initialised classifiers (different seeds), the default being
    one.

    Args:
        alpha_ce (`float`, *optional*, defaults to `1.0`): weight of each network's loss on the labels.
        alpha_kd (`float`, *optional*, defaults to `1.0`): weight of a given teacher's soft targets (unused without).
        temperature (`float`, *optional*, defaults to `1.0`): softmax temperature of the mutual KL (and teacher KD).
        dml_weight (`float`, *optional*, defaults to `1.0`): weight of the mutual term.
        dml_num_peers (`int`, *optional*): number of peers (K - 1 >= 1); with peer layers or checkpoints, their count.
        dml_peer_layers (`str`, *optional*): the peers' layers, see above.
        dml_peers_from (`str`, *optional*): the peers' checkpoints, see above.
    """

    alpha_ce: float = field(default=1.0, metadata={"help": "Weight of each network's loss on the labels."})
    alpha_kd: float = field(default=1.0, metadata={"help": "Weight of a teacher's soft targets (if one is given)."})
    temperature: float = field(default=1.0, metadata={"help": "Softmax temperature of the mutual KL (paper: 1)."})
    dml_weight: float = field(default=1.0, metadata={"help": "Weight of the mutual KL."})
    dml_num_peers: int | None = field(default=None, metadata={"help": "Peers besides the student (K - 1, >= 1)."})
    dml_peer_layers: str | None = field(
        default=None, metadata={"help": "Each peer's 0-based source layers: '1,3,5;0,2,4'."}
    )
    dml_peers_from: str | None = field(default=None, metadata={"help": "The peers' checkpoints, comma-separated."})

    def __post_init__(self):
        super().__post_init__()
        if self.dml_peer_layers and self.dml_peers_from:
            raise ValueError("Give the peers by dml_peer_layers or by dml_peers_from, not both")
        given = len(parse_peer_layers(self.dml_peer_layers)) or len(self.peer_checkpoints())
        if given and self.dml_num_peers is not None and self.dml_num_peers != given:
            raise ValueError(f"dml_num_peers is {self.dml_num_peers} but {given} peers are given")
        self.dml_num_peers = given or (1 if self.dml_num_peers is None else self.dml_num_peers)
        if self.dml_num_peers < 1:
            raise ValueError(
                f"Mutual learning needs K >= 2 networks, i.e. at least one peer; dml_num_peers is {self.dml_num_peers}"
            )
        if self.dml_weight < 0:
            raise ValueError(f"dml_weight must be >= 0, got {self.dml_weight}")

    def peer_checkpoints(self) -> list[str]:
        return [path.strip() for path in (self.dml_peers_from or "").split(",") if path.strip()]
