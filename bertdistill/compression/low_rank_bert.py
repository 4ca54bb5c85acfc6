"""BERT whose chosen linear layers (and optionally word embeddings) are products of two thin matrices: the checkpoint
format of a low-rank factorized BERT.

`LowRankBertConfig.ranks` maps module names (relative to the BERT base, e.g. `encoder.layer.0.intermediate.dense`,
`embeddings.word_embeddings`) to ranks. The model is built as a (possibly structurally pruned) BERT, then each named
`nn.Linear(in, out)` becomes a [`LowRankLinear`] (`down`: in -> r without bias, `up`: r -> out with the bias) and the
word embeddings a [`LowRankEmbedding`] (an r-wide table and an r -> hidden projection, ALBERT's factorization).

This file imports only torch, transformers and `pruned_bert.py` (itself torch + transformers): `save_pretrained` copies
both next to the weights, so `AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=True)` loads
the model without bertdistill.
"""

from __future__ import annotations

from torch import nn

from .pruned_bert import PrunedBertConfig, PrunedBertForSequenceClassification


class LowRankBertConfig(PrunedBertConfig):
    r"""[`PrunedBertConfig`] (a stock BERT by default) plus the ranks of the factorized modules.

    Args:
        ranks (`dict[str, int]`, *optional*): module name (relative to the BERT base) -> rank.
        kept_energy (`dict[str, float]`, *optional*): module name -> the share of its squared singular values the
            factorization kept (a record; the model does not read it).
        **kwargs: everything `PrunedBertConfig` takes.
    """

    model_type = "bertdistill_low_rank_bert"

    def __init__(self, ranks: dict[str, int] | None = None, kept_energy: dict[str, float] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.ranks = dict(ranks or {})
        self.kept_energy = dict(kept_energy or {})


class LowRankLinear(nn.Module):
    """`up(down(x))`: a rank-`rank` stand-in for `nn.Linear(in_features, out_features, bias)`."""

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.down = nn.Linear(in_features, rank, bias=False)
        self.up = nn.Linear(rank, out_features, bias=bias)

    def forward(self, x):
        return self.up(self.down(x))


class LowRankEmbedding(nn.Module):
    """`project(table[ids])`: word embeddings of width `rank`, projected to the hidden size."""

    def __init__(self, num_embeddings: int, embedding_dim: int, rank: int, padding_idx: int | None = None):
        super().__init__()
        self.num_embeddings, self.embedding_dim, self.rank = num_embeddings, embedding_dim, rank
        self.table = nn.Embedding(num_embeddings, rank, padding_idx=padding_idx)
        self.project = nn.Linear(rank, embedding_dim, bias=False)

    def forward(self, input_ids):
        return self.project(self.table(input_ids))


def _factorize_modules(bert: nn.Module, ranks: dict[str, int]) -> None:
    for name, rank in ranks.items():
        parent_name, _, child = name.rpartition(".")
        parent = bert.get_submodule(parent_name) if parent_name else bert
        module = getattr(parent, child)
        if isinstance(module, nn.Embedding):
            replacement = LowRankEmbedding(module.num_embeddings, module.embedding_dim, rank, module.padding_idx)
        elif isinstance(module, nn.Linear):
            replacement = LowRankLinear(module.in_features, module.out_features, rank, module.bias is not None)
        else:
            raise ValueError(f"{name} is a {type(module).__name__}; only nn.Linear and nn.Embedding factorize")
        setattr(parent, child, replacement)


class LowRankBertForSequenceClassification(PrunedBertForSequenceClassification):
    config_class = LowRankBertConfig

    def __init__(self, config: LowRankBertConfig):
        super().__init__(config)
        _factorize_modules(self.bert, config.ranks)
        self.post_init()
