"""Networks trained side by side with the student (DML's peers, knowledge grafting's networks): how they are made and
checked. They live in the wrapped model's extras under `peer_<k>` (k = 1, 2, ...): one optimizer and DDP see them."""

from __future__ import annotations

import copy

import torch
from torch import nn
from transformers import AutoModelForSequenceClassification, PreTrainedModel

from .student import check_same_vocabulary

PEERS_KEY = "peer_{}"


def default_peers(model: PreTrainedModel, count: int, checkpoints: list[str], seed: int) -> list[PreTrainedModel]:
    """The peers of `model`: the `checkpoints` (loaded with its label count), or else `count` copies of it with
    freshly initialised classifiers (seeds `seed + k`; torch's global generator is left as it was)."""
    if checkpoints:
        return [
            AutoModelForSequenceClassification.from_pretrained(path, num_labels=model.config.num_labels)
            for path in checkpoints
        ]
    head = getattr(model, "classifier", None)
    if not isinstance(head, nn.Module):
        raise ValueError(
            f"A {type(model).__name__} has no `classifier` to re-initialise: give the peers (peers= or checkpoints)"
        )
    peers = []
    for k in range(1, count + 1):
        peer = copy.deepcopy(model)
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed + k)
        peer.classifier.apply(peer._init_weights)
        torch.random.set_rng_state(generator_state)
        peers.append(peer)
    return peers


def check_peers(model: PreTrainedModel, peers: list[PreTrainedModel], same_shape: bool = False) -> None:
    """Refuse peers with another vocabulary or label count (or, with `same_shape`, other parameter shapes)."""
    for peer in peers:
        check_same_vocabulary(model.config, peer.config)
        if peer.config.num_labels != model.config.num_labels:
            raise ValueError(f"A peer predicts {peer.config.num_labels} labels, the student {model.config.num_labels}")
        if same_shape:
            mine = {k: v.shape for k, v in model.state_dict().items()}
            theirs = {k: v.shape for k, v in peer.state_dict().items()}
            if mine != theirs:
                raise ValueError("Grafting mixes weights tensor by tensor: every network needs the student's shapes")


def network_logits(student_outputs, batch: dict, extras, peers: int) -> list[torch.Tensor]:
    """The student's logits and those of `peers` peers (`extras["peer_<k>"]`) on the batch, inside the wrapper's
    forward (so DDP sees the peers); the peers run once per forward, kept in `batch`, which lives for one forward."""
    if "_peer_logits" not in batch:
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if batch.get(k) is not None}
        logits = [extras[PEERS_KEY.format(k)](**inputs).logits for k in range(1, peers + 1)]
        batch["_peer_logits"] = [student_outputs.logits, *logits]
    return batch["_peer_logits"]
