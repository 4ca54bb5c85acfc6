"""Distillation losses as pure functions of tensors, grouped by where they read from, and the registry that names
them (`bertdistill.losses.registry`).

- `logits`: soft targets, soft cross-entropy, MSE, the gold-label loss.
- `hidden`: between matched layers' token states: MSE, cosine, Patient-KD, FitNet, NST, FSP.
- `hidden_learned`: those with trainable parts: VID, FT, AB (FFN pre-activations).
- `relations`: between the examples of a batch: SP, RKD, PKT, CC.
- `attention`: attention scores and maps: MSE, KL, AT (the authors' squared form and the paper's norm).

Shapes: `B` batch, `C` classes (1 for regression), `L` tokens, `H` hidden size, `h` attention heads. Every loss over
tokens follows the padding policy of `bertdistill.losses.padding`.
"""

from .attention import at_attention_loss, at_hidden_loss, at_norm_loss, attention_kl, attention_mse
from .hidden import (
    cosine_embedding_loss,
    fitnet_hint_loss,
    fsp_loss,
    fsp_matrix,
    hidden_mse,
    nst_loss,
    pkd_cls_mse,
    pkd_hidden_distance,
)
from .hidden_learned import FTParts, VIDParts, ab_loss, ft_loss, ft_reconstruction_loss, vid_loss
from .logits import hard_label_loss, logit_mse, soft_cross_entropy, soft_target_kl
from .multi_teacher import TEACHER_WEIGHTINGS, multi_teacher_kd, teacher_weights
from .padding import sentence_vectors, sequence_mean
from .registry import (
    LOSSES,
    MATCH_LOSSES,
    MatchLoss,
    default_feature,
    get_loss,
    get_match_loss,
    register_loss,
    register_match_loss,
)
from .relations import cc_kernel, cc_loss, pkt_loss, rkd_angle_loss, rkd_distance_loss, rkd_loss, sp_loss

__all__ = [
    "TEACHER_WEIGHTINGS",
    "multi_teacher_kd",
    "teacher_weights",
    "LOSSES",
    "MATCH_LOSSES",
    "FTParts",
    "MatchLoss",
    "VIDParts",
    "ab_loss",
    "at_attention_loss",
    "at_hidden_loss",
    "at_norm_loss",
    "attention_kl",
    "attention_mse",
    "cc_kernel",
    "cc_loss",
    "cosine_embedding_loss",
    "default_feature",
    "fitnet_hint_loss",
    "fsp_loss",
    "fsp_matrix",
    "ft_loss",
    "ft_reconstruction_loss",
    "get_loss",
    "get_match_loss",
    "hard_label_loss",
    "hidden_mse",
    "logit_mse",
    "nst_loss",
    "pkd_cls_mse",
    "pkd_hidden_distance",
    "pkt_loss",
    "register_loss",
    "register_match_loss",
    "rkd_angle_loss",
    "rkd_distance_loss",
    "rkd_loss",
    "sentence_vectors",
    "sequence_mean",
    "soft_cross_entropy",
    "soft_target_kl",
    "sp_loss",
    "vid_loss",
]
