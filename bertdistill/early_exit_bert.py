"""BERT with a classifier after several layers: the network of BYOT self-distillation (Zhang et al., arXiv 1905.08094)
and early-exit inference with it (an easy input answered after a few layers, a hard one after all of them).

`MultiExitBertForSequenceClassification` is a stock `BertModel` (no pooler of its own) plus one head per exit layer,
each BERT's head (pooler: dense + tanh on the layer's [CLS] state, dropout, linear classifier). The deepest exit is
always the last layer. In training and by default (`exit_policy="none"`) every layer runs and `logits` are the deepest
exit's; `exit_logits` and `exit_features` (each head's pooled vector) hold every exit's; the same whenever hidden
states are asked for (they need every layer). With an exit policy, inference runs layer by layer and a row leaves at
the first exit whose prediction passes the test, so the rows that remain (and, at batch size 1, the whole forward)
stop early:

- `"entropy"`: the prediction's entropy divided by `log(num_labels)` is at most `exit_threshold` (DeeBERT's test,
  normalised to [0, 1]: 1 exits every row at the first exit, 0 only certain predictions);
- `"confidence"`: the largest class probability is at least `exit_threshold` (0 exits every row at the first exit,
  a value above 1 never);
- `"patience"`: `exit_patience` consecutive exits agree on the predicted class (1 = the first exit; PABEE's patience
  `t` counts the agreements after the first, i.e. `exit_patience = t + 1`).

`exit_layers_used` in the output says where each row left. The policies need classes: a regression model refuses
them (its config keeps `exit_policy="none"`).

This file imports only torch and transformers: `save_pretrained` copies it next to the weights (through
`register_for_auto_class`), so `AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=True)`
loads a multi-exit checkpoint without bertdistill; with bertdistill imported the classes are registered with the Auto
classes.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn
from transformers import BertConfig, BertForSequenceClassification, BertModel, BertPreTrainedModel
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_outputs import SequenceClassifierOutput

EXIT_POLICIES = ("none", "entropy", "confidence", "patience")


class MultiExitBertConfig(BertConfig):
    r"""`BertConfig` plus where the exits are and how inference leaves.

    Args:
        exit_layers (`list[int]`, *optional*): 1-based layers followed by a classifier, increasing; the last layer is
            always one (added when missing). Default: every layer.
        exit_policy (`str`, *optional*, defaults to `"none"`): `"none"`, `"entropy"`, `"confidence"` or `"patience"`.
        exit_threshold (`float`, *optional*, defaults to `0.5`): the entropy (normalised, in [0, 1]) at most, or the
            confidence (in [0, 1], above 1: never) at least, that lets a row leave.
        exit_patience (`int`, *optional*, defaults to `2`): agreeing consecutive exits for `"patience"` (>= 1).
        **kwargs: everything `BertConfig` takes.
    """

    model_type = "bertdistill_multi_exit_bert"
    # what Trainer.prediction_step leaves out of the predictions (they are `logits` alone)
    keys_to_ignore_at_inference = ["exit_logits", "exit_features", "exit_layers_used"]

    def __init__(
        self,
        exit_layers: list[int] | None = None,
        exit_policy: str = "none",
        exit_threshold: float = 0.5,
        exit_patience: int = 2,
        **kwargs,
    ):
        super().__init__(**kwargs)
        layers = list(range(1, self.num_hidden_layers + 1)) if exit_layers is None else [int(k) for k in exit_layers]
        if self.num_hidden_layers not in layers:
            layers.append(self.num_hidden_layers)
        if sorted(set(layers)) != layers or not all(1 <= k <= self.num_hidden_layers for k in layers):
            raise ValueError(
                f"exit_layers must be increasing 1-based layers of the {self.num_hidden_layers}-layer encoder, got "
                f"{exit_layers}"
            )
        self.exit_layers = layers
        self.exit_policy = exit_policy
        self.exit_threshold = float(exit_threshold)
        self.exit_patience = int(exit_patience)
        check_exit_policy(exit_policy, self.exit_threshold, self.exit_patience)
        if exit_policy != "none" and self.num_labels == 1:
            raise ValueError(
                f"exit_policy {exit_policy!r} reads class probabilities; this model predicts one value (regression): "
                "keep exit_policy='none'"
            )


def check_exit_policy(policy: str, threshold: float, patience: int) -> None:
    """Refuse a policy, threshold or patience outside its range."""
    if policy not in EXIT_POLICIES:
        raise ValueError(f"exit_policy must be one of {', '.join(EXIT_POLICIES)}, got {policy!r}")
    if policy == "entropy" and not 0 <= threshold <= 1:
        raise ValueError(f"exit_threshold for the entropy policy is a normalised entropy in [0, 1], got {threshold}")
    if policy == "confidence" and threshold < 0:
        raise ValueError(f"exit_threshold for the confidence policy is a probability (>= 0), got {threshold}")
    if patience < 1:
        raise ValueError(f"exit_patience must be >= 1, got {patience}")


class ExitHead(nn.Module):
    """BERT's classification head on one layer's [CLS] state: pooler (dense + tanh), dropout, linear."""

    def __init__(self, config: MultiExitBertConfig):
        super().__init__()
        self.pooler = nn.Linear(config.hidden_size, config.hidden_size)
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = torch.tanh(self.pooler(hidden_states[:, 0]))
        return self.classifier(self.dropout(pooled)), pooled


@dataclass
class MultiExitOutput(SequenceClassifierOutput):
    """`logits`: the deepest exit's (or, with an exit policy, each row's exit's); `exit_logits` / `exit_features`:
    every exit's logits and pooled vectors (full depth only); `exit_layers_used`: the layer each row left at."""

    exit_logits: tuple[torch.Tensor, ...] | None = None
    exit_features: tuple[torch.Tensor, ...] | None = None
    exit_layers_used: torch.Tensor | None = None


class MultiExitBertForSequenceClassification(BertPreTrainedModel):
    """BERT with a classification head after every layer of `config.exit_layers` (see the module docstring)."""

    config_class = MultiExitBertConfig

    def __init__(self, config: MultiExitBertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = BertModel(config, add_pooling_layer=False)
        self.exits = nn.ModuleDict({str(k): ExitHead(config) for k in config.exit_layers})
        self.post_init()

    @classmethod
    def from_bert(cls, model: BertForSequenceClassification, exit_layers: list[int] | None = None):
        """A multi-exit copy of a stock BERT classifier: its encoder, and its pooler and classifier in every head (the
        deepest head is then the original model; the others start from it)."""
        values = model.config.to_dict()
        for key in ("model_type", "architectures", "transformers_version", "auto_map"):
            values.pop(key, None)
        config = MultiExitBertConfig(exit_layers=exit_layers, **values)
        multi = cls(config)
        encoder = {k: v for k, v in model.bert.state_dict().items() if not k.startswith("pooler.")}
        multi.bert.load_state_dict(encoder, strict=True)  # the stock pooler goes into the heads
        head = {"pooler." + k.removeprefix("bert.pooler.dense."): v for k, v in model.state_dict().items()
                if k.startswith("bert.pooler.dense.")}  # fmt: skip
        head.update({k: v for k, v in model.state_dict().items() if k.startswith("classifier.")})
        for exit_head in multi.exits.values():
            exit_head.load_state_dict(head, strict=True)
        multi.config.name_or_path = model.config.name_or_path
        return multi

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        **kwargs,
    ) -> MultiExitOutput:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        policy = self.config.exit_policy
        if self.training or policy == "none" or self.num_labels == 1 or output_hidden_states:
            outputs = self._full_depth(input_ids, attention_mask, token_type_ids, output_hidden_states)
        else:
            outputs = self._early_exit(input_ids, attention_mask, token_type_ids)
        if labels is not None:
            if self.num_labels == 1:
                outputs.loss = nn.functional.mse_loss(outputs.logits.squeeze(-1), labels.to(outputs.logits.dtype))
            else:
                outputs.loss = nn.functional.cross_entropy(outputs.logits, labels)
        return outputs

    def _mask(self, embeddings: torch.Tensor, attention_mask: torch.Tensor):
        return create_bidirectional_mask(config=self.config, inputs_embeds=embeddings, attention_mask=attention_mask)

    def _full_depth(self, input_ids, attention_mask, token_type_ids, output_hidden_states) -> MultiExitOutput:
        hidden = self.bert.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
        mask = self._mask(hidden, attention_mask)
        states = [hidden]
        logits, features = [], []
        for index, layer in enumerate(self.bert.encoder.layer, start=1):
            hidden = layer(hidden, mask)
            states.append(hidden)
            if str(index) in self.exits:
                exit_logits, pooled = self.exits[str(index)](hidden)
                logits.append(exit_logits)
                features.append(pooled)
        depth = torch.full((input_ids.shape[0],), self.config.num_hidden_layers, device=input_ids.device)
        return MultiExitOutput(
            logits=logits[-1],
            hidden_states=tuple(states) if output_hidden_states else None,
            exit_logits=tuple(logits),
            exit_features=tuple(features),
            exit_layers_used=depth,
        )

    def _passes(self, logits: torch.Tensor, streak: torch.Tensor) -> torch.Tensor:
        """Which rows leave at this exit, from its logits (and, for patience, each row's agreeing streak)."""
        config = self.config
        probs = logits.float().softmax(-1)
        if config.exit_policy == "entropy":
            entropy = -(probs * probs.clamp_min(1e-12).log()).sum(-1) / math.log(self.num_labels)
            return entropy <= config.exit_threshold
        if config.exit_policy == "confidence":
            return probs.max(-1).values >= config.exit_threshold
        return streak >= config.exit_patience

    @torch.no_grad()
    def _early_exit(self, input_ids, attention_mask, token_type_ids) -> MultiExitOutput:
        batch = input_ids.shape[0]
        rows = torch.arange(batch, device=input_ids.device)  # the rows still running, as indices into the batch
        hidden = self.bert.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
        mask = self._mask(hidden, attention_mask)
        final = torch.zeros(batch, self.num_labels, dtype=hidden.dtype, device=hidden.device)
        used = torch.full((batch,), self.config.num_hidden_layers, device=input_ids.device)
        previous = torch.full((batch,), -1, device=input_ids.device)
        streak = torch.zeros(batch, dtype=torch.long, device=input_ids.device)
        for index, layer in enumerate(self.bert.encoder.layer, start=1):
            hidden = layer(hidden, mask)
            if str(index) not in self.exits:
                continue
            logits = self.exits[str(index)](hidden)[0]
            predicted = logits.argmax(-1)
            streak = torch.where(predicted == previous, streak + 1, torch.ones_like(streak))
            previous = predicted
            if index < self.config.num_hidden_layers:
                leave = self._passes(logits, streak)
            else:
                leave = torch.ones_like(predicted, dtype=torch.bool)
            final[rows[leave]] = logits[leave].to(final.dtype)
            used[rows[leave]] = index
            if leave.all():
                break
            keep = ~leave
            rows, hidden, previous, streak = rows[keep], hidden[keep], previous[keep], streak[keep]
            attention_mask = attention_mask[keep]
            mask = self._mask(hidden, attention_mask)
        return MultiExitOutput(logits=final, exit_layers_used=used)


def truncate_at_exit(model: MultiExitBertForSequenceClassification, layer: int) -> BertForSequenceClassification:
    """A stock `BertForSequenceClassification` of the first `layer` layers with exit `layer`'s head as its pooler and
    classifier: the fixed-depth network that exit computes, loadable without bertdistill."""
    if str(layer) not in model.exits:
        raise ValueError(f"Layer {layer} has no exit; the exits are after layers {model.config.exit_layers}")
    values = model.config.to_dict()
    for key in ("model_type", "architectures", "transformers_version", "auto_map", "exit_layers", "exit_policy",
                "exit_threshold", "exit_patience"):  # fmt: skip
        values.pop(key, None)
    values["num_hidden_layers"] = layer
    stock = BertForSequenceClassification(BertConfig(**values))
    state = {f"bert.{k}": v for k, v in model.bert.state_dict().items()
             if not k.startswith("encoder.layer.") or int(k.split(".")[2]) < layer}  # fmt: skip
    head = model.exits[str(layer)].state_dict()
    state.update({f"bert.pooler.dense.{k[len('pooler.') :]}": v for k, v in head.items() if k.startswith("pooler.")})
    state.update({k: v for k, v in head.items() if k.startswith("classifier.")})
    stock.load_state_dict(copy.deepcopy(state), strict=True)
    return stock
