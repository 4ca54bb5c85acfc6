"""Early-exit BERT on the library side: the multi-exit classes registered with the Auto classes (their file,
`early_exit_bert.py`, ships with every saved checkpoint), and the sweep of exit thresholds that reports metric, mean
layers used and measured latency."""

from __future__ import annotations

import time

import datasets
import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import AutoConfig, AutoModelForSequenceClassification, DataCollatorWithPadding

from glue_tasks import GlueTask, glue_metrics

from .early_exit_bert import (
    EXIT_POLICIES,
    MultiExitBertConfig,
    MultiExitBertForSequenceClassification,
    check_exit_policy,
    truncate_at_exit,
)

AutoConfig.register(MultiExitBertConfig.model_type, MultiExitBertConfig, exist_ok=True)
AutoModelForSequenceClassification.register(MultiExitBertConfig, MultiExitBertForSequenceClassification, exist_ok=True)
MultiExitBertConfig.register_for_auto_class()
MultiExitBertForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")


@torch.inference_mode()
def predict_with_exits(
    model, dataset: datasets.Dataset, tokenizer, batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """Logits and the layer each row left at, over a tokenized split (dynamic padding, the model as configured); a
    stock model reports its full depth for every row."""
    model.eval()
    collate = DataCollatorWithPadding(tokenizer)
    columns = [c for c in ("input_ids", "attention_mask", "token_type_ids") if c in dataset.column_names]
    logits, layers = [], []
    for start in range(0, len(dataset), batch_size):
        rows = dataset.select(range(start, min(start + batch_size, len(dataset))))
        inputs = collate([{c: row[c] for c in columns} for row in rows])
        outputs = model(**inputs)
        logits.append(outputs.logits.float().numpy())
        used = getattr(outputs, "exit_layers_used", None)
        depth = model.config.num_hidden_layers
        layers.append(used.numpy() if used is not None else np.full(len(rows), depth))
    return np.concatenate(logits), np.concatenate(layers)


@torch.inference_mode()
def batch_one_latency(models: dict[str, object], dataset: datasets.Dataset, rows: int, repeats: int = 1) -> dict:
    """Mean milliseconds per example at batch size 1 over the first `rows` rows, for each `name -> (model,
    config updates)`: every row goes through every setting in turn (side by side, so load on a shared machine hits
    all alike), `repeats` times."""
    columns = [c for c in ("input_ids", "attention_mask", "token_type_ids") if c in dataset.column_names]
    sample = [{c: torch.tensor([dataset[i][c]]) for c in columns} for i in range(min(rows, len(dataset)))]
    seconds = dict.fromkeys(models, 0.0)
    for model, updates in models.values():
        model.eval()
        model.config.update(updates)
        model(**sample[0])  # warm-up
    for _ in range(repeats):
        for inputs in sample:
            for name, (model, updates) in models.items():
                model.config.update(updates)
                start = time.perf_counter()
                model(**inputs)
                seconds[name] += time.perf_counter() - start
    return {name: 1000 * total / (len(sample) * repeats) for name, total in seconds.items()}


def early_exit_sweep(
    model: MultiExitBertForSequenceClassification,
    dataset: datasets.Dataset,
    tokenizer,
    task: GlueTask,
    policy: str,
    thresholds: list[float],
    latency_rows: int = 100,
    latency_repeats: int = 1,
    patience: int = 2,
) -> list[dict]:
    """Metric, mean layers used and batch-1 CPU latency of early exit at each threshold (or, for `"patience"`, each
    patience in `thresholds`), and of every exit as a fixed-depth network (`truncate_at_exit`, the stock checkpoint
    of that depth). Rows: `setting`, `kind` (`early_exit` / `fixed_depth`), `threshold`, the task's metrics, `score`
    (its main metric), `mean_layers`, `latency_b1_ms`. The model's own exit settings are restored afterwards."""
    if task.is_regression:
        raise ValueError(f"Early exit needs class probabilities; {task.name} is a regression task")
    saved = {k: getattr(model.config, k) for k in ("exit_policy", "exit_threshold", "exit_patience")}
    settings: dict[str, tuple] = {}
    for value in thresholds:
        updates = {"exit_policy": policy, "exit_threshold": float(value), "exit_patience": patience}
        if policy == "patience":
            updates.update(exit_threshold=0.0, exit_patience=int(value))
        check_exit_policy(policy, updates["exit_threshold"], updates["exit_patience"])
        settings[f"{policy} {value:g}"] = (model, updates)
    for layer in model.config.exit_layers:
        settings[f"exit {layer} (fixed depth)"] = (truncate_at_exit(model, layer), {})
    references = np.asarray(dataset["label"] if "label" in dataset.column_names else dataset["labels"])
    rows = []
    try:
        for name, (network, updates) in tqdm(settings.items(), desc="early-exit settings"):
            network.config.update(updates)
            logits, used = predict_with_exits(network, dataset, tokenizer)
            metrics = glue_metrics(task, logits, references)
            rows.append({
                "setting": name,
                "kind": "fixed_depth" if not updates else "early_exit",
                "threshold": updates.get("exit_patience" if policy == "patience" else "exit_threshold"),
                **metrics,
                "score": metrics[task.main_metric],
                "mean_layers": float(used.mean()),
            })  # fmt: skip
        latency = batch_one_latency(settings, dataset, latency_rows, latency_repeats)
    finally:
        model.config.update(saved)
    for row in rows:
        row["latency_b1_ms"] = latency[row["setting"]]
    return rows


__all__ = [
    "EXIT_POLICIES",
    "batch_one_latency",
    "early_exit_sweep",
    "predict_with_exits",
    "MultiExitBertConfig",
    "MultiExitBertForSequenceClassification",
    "check_exit_policy",
    "truncate_at_exit",
]
