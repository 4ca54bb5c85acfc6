"""Low-rank factorization of a BERT classifier: each encoder linear layer (and optionally the word embeddings,
ALBERT-style) replaced by the product of two thin matrices from its truncated SVD, to a rank given or chosen by kept
spectral energy; then distil to recover (`scripts/compress.py --stages factorize`).

The factors of `W = U S V^T` truncated to rank r are `down = sqrt(S_r) V_r^T` and `up = U_r sqrt(S_r)`: the product
is the best rank-r approximation (Eckart-Young), and splitting `sqrt(S)` between the two gives both factors the same
scale, so the recovery training's updates move them alike (with `S` on one side, one factor's gradients would be
`S` times the other's). A layer whose factors would hold as many parameters as the dense layer (`r (in + out) >= in
out`) stays dense by default: factorizing it would cost time and save nothing.

The result is a [`LowRankBertForSequenceClassification`], registered with the Auto classes here and saved with its
code (`auto_map`), so it loads without bertdistill through `trust_remote_code=True`.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, BertForSequenceClassification, PreTrainedModel

from .low_rank_bert import LowRankBertConfig, LowRankBertForSequenceClassification, LowRankEmbedding, LowRankLinear
from .pruned_bert import PrunedBertConfig

AutoConfig.register(LowRankBertConfig.model_type, LowRankBertConfig, exist_ok=True)
AutoModelForSequenceClassification.register(LowRankBertConfig, LowRankBertForSequenceClassification, exist_ok=True)
LowRankBertConfig.register_for_auto_class()
LowRankBertForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")

ENCODER_LINEARS = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
                   "intermediate.dense", "output.dense")  # fmt: skip
WORD_EMBEDDINGS = "embeddings.word_embeddings"


def _rank_for_energy(singular_values: torch.Tensor, energy: float) -> int:
    """The smallest rank whose singular values hold `energy` of the sum of their squares."""
    squares = singular_values.double() ** 2
    shares = squares.cumsum(0) / squares.sum()
    return int(torch.searchsorted(shares, torch.tensor(energy, dtype=shares.dtype) - 1e-12).item()) + 1


def factorize(
    model: PreTrainedModel,
    rank: int | None = None,
    energy: float | None = None,
    embedding_rank: int | None = None,
    keep_dense_if_larger: bool = True,
) -> LowRankBertForSequenceClassification:
    """A factorized copy of a BERT sequence classifier (`model` is left unchanged).

    Args:
        rank (`int`, *optional*): the rank of every encoder linear layer.
        energy (`float`, *optional*): per layer, the smallest rank keeping this share of `sum s_i^2`, in (0, 1].
        embedding_rank (`int`, *optional*): also factorize the word embeddings to this rank.
        keep_dense_if_larger (`bool`, *optional*, defaults to `True`): leave a layer dense where its factors would not
            be smaller.

    Raises:
        `ValueError`: for both or neither of `rank` / `energy`, a rank below 1 or above a layer's `min(in, out)` (the
            layer is named), an energy outside (0, 1], an embedding rank outside [1, hidden], a model that is not a
            BERT sequence classifier or is factorized already.
    """
    if not isinstance(model, BertForSequenceClassification):
        raise ValueError(f"factorize takes a BertForSequenceClassification, got {type(model).__name__}")
    if isinstance(model.config, LowRankBertConfig):
        raise ValueError("the model is factorized already")
    if (rank is None) == (energy is None):
        raise ValueError("give exactly one of rank and energy")
    if energy is not None and not 0 < energy <= 1:
        raise ValueError(f"energy must be in (0, 1], got {energy}")
    bert = model.bert
    linears = {f"encoder.layer.{i}.{name}": layer.get_submodule(name)
               for i, layer in enumerate(bert.encoder.layer) for name in ENCODER_LINEARS}  # fmt: skip
    if rank is not None:
        for name, linear in linears.items():
            largest = min(linear.in_features, linear.out_features)
            if not 1 <= rank <= largest:
                raise ValueError(f"rank {rank} is outside [1, {largest}] for {name} ({linear.in_features} -> "
                                 f"{linear.out_features})")  # fmt: skip
    hidden = bert.config.hidden_size
    if embedding_rank is not None and not 1 <= embedding_rank <= hidden:
        raise ValueError(f"embedding_rank must be in [1, {hidden}], got {embedding_rank}")

    factors, ranks, kept = {}, {}, {}
    with torch.no_grad():
        for name, linear in linears.items():
            u, s, vh = torch.linalg.svd(linear.weight.double(), full_matrices=False)
            r = rank if rank is not None else _rank_for_energy(s, energy)
            if keep_dense_if_larger and r * (linear.in_features + linear.out_features) >= linear.weight.numel():
                continue
            root = s[:r].sqrt()
            factors[name] = ((root[:, None] * vh[:r]).float(), (u[:, :r] * root).float())
            ranks[name] = r
            kept[name] = float((s[:r] ** 2).sum() / (s**2).sum())
        if embedding_rank is not None:
            table = bert.embeddings.word_embeddings.weight.double()  # (vocab, hidden) = U S V^T
            u, s, vh = torch.linalg.svd(table, full_matrices=False)
            root = s[:embedding_rank].sqrt()
            factors[WORD_EMBEDDINGS] = ((u[:, :embedding_rank] * root).float(),
                                        (root[:, None] * vh[:embedding_rank]).T.float())  # fmt: skip
            ranks[WORD_EMBEDDINGS] = embedding_rank
            kept[WORD_EMBEDDINGS] = float((s[:embedding_rank] ** 2).sum() / (s**2).sum())

    values = model.config.to_dict()
    for key in ("model_type", "transformers_version", "architectures", "auto_map"):
        values.pop(key, None)
    if not isinstance(model.config, PrunedBertConfig):
        values["attention_head_size"] = bert.encoder.layer[0].attention.self.attention_head_size
    factorized = LowRankBertForSequenceClassification(LowRankBertConfig(ranks=ranks, kept_energy=kept, **values))
    state = {k: v for k, v in model.state_dict().items()}
    for name, (first, second) in factors.items():
        key = f"bert.{name}"
        if name == WORD_EMBEDDINGS:
            del state[f"{key}.weight"]
            state[f"{key}.table.weight"], state[f"{key}.project.weight"] = first, second
        else:
            del state[f"{key}.weight"]
            state[f"{key}.down.weight"], state[f"{key}.up.weight"] = first, second
            state[f"{key}.up.bias"] = state.pop(f"{key}.bias")
    factorized.load_state_dict(state, strict=True)
    factorized.config._attn_implementation = model.config._attn_implementation
    return factorized.train(model.training)


def factorization_report(model: nn.Module) -> list[dict]:
    """Per factorized module of `model`: its rank, parameters before (dense) and after, and the kept energy."""
    rows = []
    for name, module in model.base_model.named_modules():
        if isinstance(module, LowRankLinear):
            dense = module.in_features * module.out_features
            after = module.rank * (module.in_features + module.out_features)
        elif isinstance(module, LowRankEmbedding):
            dense = module.num_embeddings * module.embedding_dim
            after = module.rank * (module.num_embeddings + module.embedding_dim)
        else:
            continue
        rows.append({"module": name, "rank": module.rank, "dense_parameters": dense, "parameters": after,
                     "kept_energy": model.config.kept_energy.get(name)})  # fmt: skip
    return rows
