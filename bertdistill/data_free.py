"""Data-free distillation in embedding space (DAFL, Chen et al., arXiv 1904.01186): a generator makes the inputs,
the fixed teacher judges them, the student learns from the teacher on them alone.

Text is discrete, so the generator makes what a BERT reads after its word embeddings, `inputs_embeds` `(B, L, H)`:
fixed length `L`, every position a real token (attention mask all ones), token type 0, position 0 the [CLS] word
embedding and position `L - 1` the [SEP] one (so that the [CLS] vector the classifier reads starts where it does on
real text). Two output spaces:
- `"free"`: unconstrained vectors, scaled to the teacher's word embeddings' per-dimension mean and spread;
- `"vocab"`: at every position a softmax mixture of the teacher's word embeddings (`softmax(logits / tau) @ E`), so the
  inputs stay in the span of real tokens; the student reads the same mixture of its own word embeddings, which lets a
  narrower student take part.

The generator's loss, from the teacher's outputs on generated inputs (the paper's three terms):
`L_G = L_oh + alpha * L_a + beta * L_ie`, `L_oh` the cross-entropy of the teacher's predictions with their own argmax
(confident predictions), `L_a = -mean ||f||_1` of the teacher's final [CLS] vectors (the paper's features before the
classifier: strong activations), `L_ie = -H(mean prediction over the batch)` (all classes equally often).

Reductions (`DATA_FREE_REDUCTIONS`): `"paper"` (the default) takes the formulas as the paper prints them, `L_a` the
L1 norm of each row's features (a sum over the `H` dimensions) averaged over the batch, `L_ie` in nats. The authors'
code (huawei-noah/Efficient-Computing, `DAFL_train.py`) computes `L_a` as the mean over every element,
`-features.abs().mean()`, i.e. the paper's value divided by `H`, and `L_ie` with `log10`; the paper's weights (0.1,
5) were tuned with those. `"reference"` follows the code: at `H = 384` its activation term weighs 384 times less
against `L_oh` and `L_ie` than the paper's formula does.

A regression teacher (STS-B) has no classes, so the two class-based terms get their regression counterparts over the
task's target range `[low, high]` (this adaptation is ours; DAFL is defined for classifiers only):
- `L_range` in place of `L_oh`: the squared distance of each prediction outside `[low, high]`, in units of the
  range (a confident classifier answers with a class; a regressor's counterpart is an answer in the target space);
- `L_spread` in place of `L_ie`: minus the entropy of the batch's soft histogram of predictions over `bins` equal
  bins of the range (each prediction spread over the bins by a Gaussian of one bin's width), lowest when the
  predictions cover the range evenly (DAFL's "every class equally often" for a continuous target).
The student then learns the teacher's predictions by MSE (`logit_mse`), as KD does for regression.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

DATA_FREE_OUTPUTS = ("free", "vocab")
DATA_FREE_REDUCTIONS = ("paper", "reference")


class EmbeddingGenerator(nn.Module):
    """Noise `z` `(B, noise_size)` -> a batch of `length` positions in the teacher's input-embedding space.

    Args:
        word_embeddings (`torch.Tensor` of shape `(V, H)`): the teacher's word embeddings (copied: the generator does
            not train them); "free" takes their statistics, "vocab" mixes them.
        cls_id, sep_id (`int`): ids of the framing tokens.
        length (`int`): positions per generated row (>= 3).
        output (`str`): `"free"` or `"vocab"`.
        noise_size (`int`, *optional*, defaults to 128), hidden_size (`int`, *optional*, defaults to 256),
        temperature (`float`, *optional*, defaults to 1.0): `tau` of the vocabulary mixture.
    """

    def __init__(self, word_embeddings: torch.Tensor, cls_id: int, sep_id: int, length: int, output: str = "free",
                 noise_size: int = 128, hidden_size: int = 256, temperature: float = 1.0):  # fmt: skip
        super().__init__()
        if output not in DATA_FREE_OUTPUTS:
            raise ValueError(f"data-free output must be one of {', '.join(DATA_FREE_OUTPUTS)}, got {output!r}")
        if length < 3:
            raise ValueError(f"Generated rows need at least 3 positions ([CLS], one token, [SEP]), got {length}")
        vocab, width = word_embeddings.shape
        self.output, self.length, self.noise_size, self.temperature = output, length, noise_size, temperature
        self.cls_id, self.sep_id = cls_id, sep_id
        inner = length - 2
        self.body = nn.Sequential(nn.Linear(noise_size, hidden_size), nn.LeakyReLU(0.2))
        if output == "free":
            self.head = nn.Linear(hidden_size, inner * width)
            self.register_buffer("mean", word_embeddings.detach().float().mean(0).clone())
            self.register_buffer("std", word_embeddings.detach().float().std(0).clone())
        else:
            self.position = nn.Linear(hidden_size, inner * hidden_size)
            self.head = nn.Linear(hidden_size, vocab)
        self.inner, self.hidden_size = inner, hidden_size

    def noise(self, batch: int, device) -> torch.Tensor:
        return torch.randn(batch, self.noise_size, device=device)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """The generated rows before embedding: `(B, L - 2, H)` vectors ("free") or `(B, L - 2, V)` vocabulary
        weights ("vocab"); [`embed`] frames them and puts them in a model's embedding space."""
        batch = z.shape[0]
        h = self.body(z)
        if self.output == "free":
            body = self.head(h).view(batch, self.inner, -1)
            return self.mean + self.std * torch.tanh(body) * 3  # within 3 spreads of the real embeddings
        positions = F.leaky_relu(self.position(h).view(batch, self.inner, self.hidden_size), 0.2)
        return F.softmax(self.head(positions) / self.temperature, dim=-1)

    def embed(self, generated: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        """`inputs_embeds` `(B, L, H)` for a model whose word embeddings are `embeddings` `(V, H)`: [CLS], the
        generated positions (for "vocab" the weights' mixture of `embeddings`), [SEP]."""
        if self.output == "free" and embeddings.shape[1] != generated.shape[-1]:
            raise ValueError(
                "Free generated embeddings have the teacher's width; a student of another hidden size needs the "
                "'vocab' output space"
            )
        body = generated if self.output == "free" else generated @ embeddings.to(generated.dtype)
        frame = embeddings[[self.cls_id, self.sep_id]].to(body.dtype)
        batch = body.shape[0]
        return torch.cat([frame[0].expand(batch, 1, -1), body, frame[1].expand(batch, 1, -1)], dim=1)


def one_hot_loss(logits: torch.Tensor) -> torch.Tensor:
    """DAFL's `L_oh`: cross-entropy of the predictions with their own argmax."""
    return F.cross_entropy(logits.float(), logits.argmax(-1))


def _check_reduction(reduction: str) -> None:
    if reduction not in DATA_FREE_REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(DATA_FREE_REDUCTIONS)}, got {reduction!r}")


def _plogp(probabilities: torch.Tensor, reduction: str) -> torch.Tensor:
    """`sum p log p` in nats (`"paper"`) or with `log10` (`"reference"`, the authors' code)."""
    logs = probabilities.clamp_min(1e-12).log()
    return (probabilities * (logs / math.log(10) if reduction == "reference" else logs)).sum()


def activation_loss(features: torch.Tensor, reduction: str = "paper") -> torch.Tensor:
    """DAFL's `L_a` on features `(B, H)`: minus the mean L1 norm of the rows (`"paper"`), or minus the mean absolute
    value of every element (`"reference"`, the authors' code: the paper's value over `H`)."""
    _check_reduction(reduction)
    magnitudes = features.float().abs()
    return -(magnitudes.mean() if reduction == "reference" else magnitudes.sum(-1).mean())


def information_entropy_loss(logits: torch.Tensor, reduction: str = "paper") -> torch.Tensor:
    """DAFL's `L_ie`: minus the entropy of the batch's mean prediction (lowest when every class is as frequent), in
    nats (`"paper"`) or with `log10` (`"reference"`)."""
    _check_reduction(reduction)
    return _plogp(F.softmax(logits.float(), dim=-1).mean(0), reduction)


def range_loss(predictions: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """`L_range`, regression's `L_oh`: mean squared distance of the predictions `(B,)` or `(B, 1)` outside
    `[low, high]`, divided by `(high - low)^2` (0 when every prediction is in range)."""
    y = predictions.float().reshape(-1)
    outside = F.relu(low - y) + F.relu(y - high)
    return (outside**2).mean() / (high - low) ** 2


def spread_loss(
    predictions: torch.Tensor, low: float, high: float, bins: int = 10, reduction: str = "paper"
) -> torch.Tensor:
    """`L_spread`, regression's `L_ie`: `sum_k m_k log m_k` of the batch's soft histogram `m` over `bins` equal bins
    of `[low, high]`; prediction `y_i` goes to bin `k` (centre `c_k`, width `w`) with weight
    `softmax_k(-(y_i - c_k)^2 / (2 w^2))`. About `-log bins` when the predictions fill the bins evenly (a little
    above it: the edge bins receive less of their neighbours' mass). The log is `L_ie`'s: `log10` for
    `"reference"`."""
    _check_reduction(reduction)
    if bins < 2:
        raise ValueError(f"spread_loss needs at least 2 bins, got {bins}")
    y = predictions.float().reshape(-1, 1)
    width = (high - low) / bins
    centres = low + width * (torch.arange(bins, device=y.device, dtype=y.dtype) + 0.5)
    return _plogp(F.softmax(-((y - centres) ** 2) / (2 * width**2), dim=-1).mean(0), reduction)
