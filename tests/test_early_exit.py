"""BYOT self-distillation and early-exit inference: the multi-exit BERT (exact conversion, every exit policy, save and
reload with and without bertdistill, fixed-depth truncation to a stock checkpoint), the BYOT loss against the
paper's formula, the trainer and the CLI."""

import functools
import json
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForSequenceClassification, BertForSequenceClassification

from bertdistill import (
    BYOTConfig,
    BYOTTrainer,
    MultiExitBertConfig,
    MultiExitBertForSequenceClassification,
    truncate_at_exit,
)

from conftest import tiny_config
from test_trainer import (
    SENTENCES,
    assert_batch_accumulation_invariance,
    assert_resumes_like,
    state,
    tiny_dataset,
)


def stock(tokenizer, num_labels=3, layers=4, seed=0, dropout=0.1):
    torch.manual_seed(seed)
    config = tiny_config(len(tokenizer), num_labels=num_labels, layers=layers, dropout=dropout)
    if num_labels == 1:
        config.problem_type = "regression"
    return BertForSequenceClassification(config)


def batch(tokenizer):
    encoded = tokenizer(["the movie was good", "a bad bad film of it", "it is", "not good and not bad at all"],
                        padding=True, return_tensors="pt")  # fmt: skip
    return {k: encoded[k] for k in ("input_ids", "attention_mask", "token_type_ids")}


def test_conversion_keeps_the_stock_model_and_every_exit_is_bert_head(tokenizer):
    model = stock(tokenizer).eval()
    multi = MultiExitBertForSequenceClassification.from_bert(model, [1, 3]).eval()
    assert multi.config.exit_layers == [1, 3, 4]  # the last layer is always an exit
    inputs = batch(tokenizer)
    out = multi(**inputs)
    assert torch.equal(out.logits, model(**inputs).logits)
    assert len(out.exit_logits) == len(out.exit_features) == 3
    # exit 3 computes exactly what a stock 3-layer BERT with the same head would
    three = stock(tokenizer, layers=3)
    three.load_state_dict({k: v for k, v in model.state_dict().items() if "encoder.layer.3." not in k})
    torch.testing.assert_close(out.exit_logits[1], three.eval()(**inputs).logits)


@pytest.mark.parametrize(
    "policy, threshold, patience, expected",
    [("confidence", 0.0, 2, "first"), ("confidence", 1.5, 2, "full"), ("entropy", 1.0, 2, "first"),
     ("entropy", 0.0, 2, "full"), ("patience", 0.5, 1, "first")],
)  # fmt: skip
def test_exit_policies_at_their_extremes(tokenizer, policy, threshold, patience, expected):
    """Threshold 0 (confidence), 1 (entropy) or patience 1 leave at the shallowest exit; an impossible threshold runs
    the full model: the logits are exactly those of that exit in a full-depth run."""
    multi = MultiExitBertForSequenceClassification.from_bert(stock(tokenizer), [1, 2, 4]).eval()
    inputs = batch(tokenizer)
    full = multi(**inputs)
    multi.config.update({"exit_policy": policy, "exit_threshold": threshold, "exit_patience": patience})
    early = multi(**inputs)
    index, layer = (0, 1) if expected == "first" else (-1, 4)
    assert torch.equal(early.logits, full.exit_logits[index])
    assert early.exit_layers_used.tolist() == [layer] * 4


@pytest.mark.parametrize("policy", ["confidence", "entropy", "patience"])
def test_every_row_gets_the_logits_of_the_exit_it_left_at(tokenizer, policy):
    """Between the extremes rows leave at different exits (the ones that stay run on without the others); each row's
    logits are those of its exit in the full-depth run, and its exit is the first that passes the test. The threshold
    is the median of the first exit's scores, so that some rows leave there and some do not."""
    torch.manual_seed(4)
    model = stock(tokenizer, num_labels=3)
    with torch.no_grad():
        model.classifier.weight.mul_(30)  # sharper, more varied predictions than a fresh init gives
    multi = MultiExitBertForSequenceClassification.from_bert(model).eval()
    encoded = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    inputs = {k: encoded[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad():
        # A fresh network's [CLS] states barely depend on the input: centre each head's logits over these rows and
        # give each head its own weights, so that rows and exits disagree (patience has something to wait for).
        for head in multi.exits.values():
            head.classifier.weight.add_(20 * torch.randn_like(head.classifier.weight))
        for head, features in zip(multi.exits.values(), multi(**inputs).exit_features):
            head.classifier.bias.sub_((features @ head.classifier.weight.T + head.classifier.bias).mean(0))
        full = multi(**inputs)
    probs = [logits.softmax(-1) for logits in full.exit_logits]  # per exit: (rows, classes)
    scores = {
        "confidence": [p.max(-1).values for p in probs],
        "entropy": [-(p * p.log()).sum(-1) / torch.log(torch.tensor(3.0)) for p in probs],
    }
    threshold = float(scores[policy][0].median()) if policy in scores else 0.0
    multi.config.update({"exit_policy": policy, "exit_threshold": threshold, "exit_patience": 2})
    early = multi(**inputs)
    used = early.exit_layers_used.tolist()
    predicted = [p.argmax(-1) for p in probs]
    for row, layer in enumerate(used):
        torch.testing.assert_close(early.logits[row], full.exit_logits[layer - 1][row], rtol=1e-4, atol=1e-5)
        if policy == "confidence":
            passes = [float(c[row]) >= threshold for c in scores["confidence"]]
        elif policy == "entropy":
            passes = [float(h[row]) <= threshold for h in scores["entropy"]]
        else:
            passes = [k > 0 and predicted[k][row] == predicted[k - 1][row] for k in range(len(probs))]
        assert layer == next((k + 1 for k, ok in enumerate(passes[:-1]) if ok), 4)
    assert len(set(used)) > 1, f"every row left at the same exit ({used}): the test shows nothing"


def test_exit_config_errors():
    with pytest.raises(ValueError, match="normalised entropy in"):
        MultiExitBertConfig(num_hidden_layers=2, exit_policy="entropy", exit_threshold=1.5)
    with pytest.raises(ValueError, match="exit_patience must be >= 1"):
        MultiExitBertConfig(num_hidden_layers=2, exit_policy="patience", exit_patience=0)
    with pytest.raises(ValueError, match="exit_policy must be one of"):
        MultiExitBertConfig(num_hidden_layers=2, exit_policy="fastest")
    with pytest.raises(ValueError, match="reads class probabilities; this model predicts one value"):
        MultiExitBertConfig(num_hidden_layers=2, num_labels=1, exit_policy="entropy")
    with pytest.raises(ValueError, match="increasing 1-based layers"):
        MultiExitBertConfig(num_hidden_layers=4, exit_layers=[3, 1])
    with pytest.raises(ValueError, match="increasing 1-based layers"):
        MultiExitBertConfig(num_hidden_layers=4, exit_layers=[0, 4])
    with pytest.raises(ValueError, match="has no exit"):
        truncate_at_exit(MultiExitBertForSequenceClassification(MultiExitBertConfig(
            vocab_size=20, hidden_size=8, num_hidden_layers=2, num_attention_heads=2, intermediate_size=8,
            exit_layers=[2])), 1)  # fmt: skip


def test_saved_multi_exit_and_truncated_models_reload_without_bertdistill(tokenizer, tmp_path):
    multi = MultiExitBertForSequenceClassification.from_bert(stock(tokenizer), [2, 4]).eval()
    multi.config.update({"exit_policy": "confidence", "exit_threshold": 0.0})
    inputs = batch(tokenizer)
    expected = multi(**inputs).logits
    multi.save_pretrained(tmp_path / "multi")
    truncate_at_exit(multi, 2).save_pretrained(tmp_path / "stock")
    torch.save({"inputs": inputs, "expected": expected}, tmp_path / "case.pt")
    assert (tmp_path / "multi" / "early_exit_bert.py").is_file()
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "multi").eval()
    assert type(reloaded).__name__ == "MultiExitBertForSequenceClassification"
    assert torch.equal(reloaded(**inputs).logits, expected)
    script = f"""
import sys, torch
from transformers import AutoModelForSequenceClassification as A
case = torch.load({str(tmp_path / "case.pt")!r})
m = A.from_pretrained({str(tmp_path / "multi")!r}, trust_remote_code=True).eval()
s = A.from_pretrained({str(tmp_path / "stock")!r}).eval()
assert type(s).__name__ == "BertForSequenceClassification", type(s)
with torch.no_grad():
    assert torch.equal(m(**case["inputs"]).logits, case["expected"])
    torch.testing.assert_close(s(**case["inputs"]).logits, case["expected"])
assert not any(name.startswith("bertdistill") for name in sys.modules), "bertdistill was imported"
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-2000:]


def byot_trainer(tmp_path, tokenizer, model=None, num_labels=2, callbacks=None, **config):
    defaults = dict(
        output_dir=str(tmp_path), per_device_train_batch_size=4, per_device_eval_batch_size=8, learning_rate=1e-3,
        max_steps=4, logging_steps=1, save_strategy="no", report_to=[], disable_tqdm=True, seed=3, use_cpu=True,
        bf16=False, train_sampling_strategy="random",
    )  # fmt: skip
    data = tiny_dataset(tokenizer, n=16, num_labels=num_labels)
    return BYOTTrainer(
        model=model if model is not None else stock(tokenizer, num_labels=num_labels, dropout=0.0),
        args=BYOTConfig(**{**defaults, **config}),
        train_dataset=data,
        eval_dataset=data,
        processing_class=tokenizer,
        callbacks=callbacks,
    )


def reference_byot_loss(exit_logits, exit_features, labels, alpha, temperature, lam):
    """Zhang et al. (2019): CE of the deepest classifier + for each shallow one (1 - alpha) CE + alpha soft
    cross-entropy to the deepest one's softened outputs + lambda * squared feature distance (mean over rows and
    features), written element by element."""
    b = labels.shape[0]

    def ce(logits):
        return sum(-(logits[i, labels[i]] - torch.logsumexp(logits[i], 0)) for i in range(b)) / b

    deep, deep_features = exit_logits[-1].detach(), exit_features[-1].detach()
    exits_ce = sum(ce(z) for z in exit_logits[:-1])
    exits_kd = 0.0
    exits_hint = 0.0
    for z, f in zip(exit_logits[:-1], exit_features[:-1]):
        for i in range(b):
            q = torch.softmax(deep[i] / temperature, 0)
            log_p = torch.log_softmax(z[i] / temperature, 0)
            exits_kd = exits_kd - sum(q[k] * log_p[k] for k in range(z.shape[1])) / b
        exits_hint = exits_hint + sum(((f[i] - deep_features[i]) ** 2).sum() for i in range(b)) / f.numel()
    total = ce(exit_logits[-1]) + (1 - alpha) * exits_ce + alpha * exits_kd + lam * exits_hint
    return {"ce": ce(exit_logits[-1]), "exits_ce": exits_ce, "exits_kd": exits_kd, "exits_hint": exits_hint}, total


def test_byot_loss_matches_the_paper(tmp_path, tokenizer):
    trainer = byot_trainer(tmp_path, tokenizer, exit_layers="1,2", byot_alpha=0.4, temperature=2.0,
                           byot_feature_weight=0.5)  # fmt: skip
    wrapper = trainer.model
    assert wrapper.student.config.exit_layers == [1, 2, 4]
    inputs = {**batch(tokenizer), "labels": torch.tensor([0, 1, 1, 0])}
    wrapper.train()
    torch.manual_seed(0)
    loss, outputs = trainer.compute_loss(wrapper, dict(inputs), return_outputs=True)
    plain = wrapper.student(**{k: v for k, v in inputs.items() if k != "labels"})
    components, total = reference_byot_loss(plain.exit_logits, plain.exit_features, inputs["labels"], 0.4, 2.0, 0.5)
    for name, value in components.items():
        torch.testing.assert_close(outputs.loss_components[name], value, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(loss, total, rtol=1e-5, atol=1e-6)
    # the deepest exit is the teacher: the soft targets and the hint send it no gradient
    deepest = wrapper.student.exits["4"]
    for name in ("exits_kd", "exits_hint"):
        grads = torch.autograd.grad(outputs.loss_components[name], list(deepest.parameters()), retain_graph=True,
                                    allow_unused=True)  # fmt: skip
        assert all(g is None or not g.any() for g in grads), name


def test_byot_trains_every_exit_and_saves_a_loadable_multi_exit_model(tmp_path, tokenizer):
    trainer = byot_trainer(tmp_path, tokenizer, model=stock(tokenizer, num_labels=2), exit_layers="every:2")
    assert isinstance(trainer.student, MultiExitBertForSequenceClassification)
    assert trainer.student.config.exit_layers == [2, 4]
    before = state(trainer.student)
    trainer.train()
    logged = [row for row in trainer.state.log_history if "loss" in row]
    assert all({"loss_ce", "loss_exits_ce", "loss_exits_kd", "loss_exits_hint"} <= set(row) for row in logged)
    after = state(trainer.student)
    for exit_layer in ("2", "4"):
        assert not torch.equal(
            after[f"exits.{exit_layer}.classifier.weight"], before[f"exits.{exit_layer}.classifier.weight"]
        )
    metrics = trainer.evaluate()
    assert "eval_loss" in metrics
    predictions = trainer.predict(trainer.eval_dataset).predictions
    assert predictions.shape == (16, 2)  # the logits alone, not every exit's
    trainer.save_model()
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path)
    assert isinstance(reloaded, MultiExitBertForSequenceClassification) and reloaded.config.exit_layers == [2, 4]
    trainer.create_model_card(task_name="rte", metrics={"eval_accuracy": 0.5})
    card = (tmp_path / "README.md").read_text()
    assert "BYOT" in card and "| exit_layers | 2,4 |" in card


def test_byot_regression_uses_mse_to_labels_and_to_the_deepest_exit(tmp_path, tokenizer):
    trainer = byot_trainer(tmp_path, tokenizer, num_labels=1, exit_layers="2")
    wrapper = trainer.model.train()
    inputs = {**batch(tokenizer), "labels": torch.tensor([0.5, 2.0, 1.0, 4.0])}
    _, outputs = trainer.compute_loss(wrapper, dict(inputs), return_outputs=True)
    plain = wrapper.student(**{k: v for k, v in inputs.items() if k != "labels"})
    shallow, deep = plain.exit_logits[0].squeeze(-1), plain.exit_logits[-1].squeeze(-1)
    torch.testing.assert_close(outputs.loss_components["ce"], ((deep - inputs["labels"]) ** 2).mean())
    torch.testing.assert_close(outputs.loss_components["exits_ce"], ((shallow - inputs["labels"]) ** 2).mean())
    torch.testing.assert_close(outputs.loss_components["exits_kd"], ((shallow - deep) ** 2).mean())
    trainer.train()
    assert all(torch.isfinite(torch.tensor(r["loss_exits_kd"])) for r in trainer.state.log_history if "loss" in r)


def test_byot_batch_times_accumulation_invariance(tmp_path, tokenizer):
    assert_batch_accumulation_invariance(functools.partial(byot_trainer, tokenizer=tokenizer), tmp_path)


def test_byot_resumes_to_the_same_weights(tmp_path, tokenizer):
    def make(folder, **config):
        return byot_trainer(folder, tokenizer, model=stock(tokenizer, num_labels=2), max_steps=6,
                            save_strategy="steps", save_steps=3, **config)  # fmt: skip

    full = make(tmp_path / "full")
    full.train()
    assert_resumes_like(full, make, tmp_path, 3, part=lambda t: t.student)


def test_byot_errors(tmp_path, tokenizer):
    with pytest.raises(ValueError, match="at least one exit below the last layer"):
        byot_trainer(tmp_path, tokenizer, exit_layers="4")
    with pytest.raises(ValueError, match="byot_alpha must be in"):
        BYOTConfig(str(tmp_path), byot_alpha=1.5)
    with pytest.raises(ValueError, match="alpha_ce and alpha_kd are not used"):
        BYOTConfig(str(tmp_path), alpha_kd=0.9)
    with pytest.raises(ValueError, match="trains without a teacher"):
        BYOTTrainer(model=stock(tokenizer), teacher_model=stock(tokenizer), args=BYOTConfig(str(tmp_path)))
    with pytest.raises(ValueError, match="'1,2,3' or 'every:k'"):
        byot_trainer(tmp_path, tokenizer, exit_layers="first")
    multi = MultiExitBertForSequenceClassification.from_bert(stock(tokenizer, num_labels=2), [2])
    with pytest.raises(ValueError, match="already has exits after layers"):
        byot_trainer(tmp_path, tokenizer, model=multi, exit_layers="1")
    byot_trainer(tmp_path, tokenizer, model=multi, exit_layers="2")  # the same exits: continued


def test_distill_glue_byot_without_a_teacher(teacher_dir, glue_dir, tmp_path):
    from conftest import load_script

    distill_glue = load_script("distill_glue")
    out = tmp_path / "byot"
    metrics = distill_glue.main([
        "--task_name", "rte", "--glue_dir", str(glue_dir), "--max_train_samples", "24", "--max_eval_samples", "16",
        "--max_seq_length", "32", "--per_device_train_batch_size", "4", "--max_steps", "3", "--logging_steps", "1",
        "--report_to", "none", "--disable_tqdm", "true", "--method", "byot", "--student_layers_from", str(teacher_dir),
        "--exit_layers", "1,2,3", "--output_dir", str(out),
    ])  # fmt: skip
    assert "eval_accuracy" in metrics
    config = json.loads((out / "config.json").read_text())
    assert config["exit_layers"] == [1, 2, 3, 4] and "auto_map" in config
    assert isinstance(AutoModelForSequenceClassification.from_pretrained(out), MultiExitBertForSequenceClassification)


def test_early_exit_sweep_script(tokenizer, glue_dir, tmp_path):
    """scripts/early_exit.py on real RTE dev rows: every threshold and every exit's fixed-depth network, the
    extremes of the sweep equal to the shallowest and the deepest fixed-depth networks, the report files, and the
    chosen setting written into the checkpoint."""
    from conftest import load_script

    early_exit = load_script("early_exit")
    multi = MultiExitBertForSequenceClassification.from_bert(stock(tokenizer, num_labels=2), [1, 2])
    multi.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    out = tmp_path / "sweep"
    rows = early_exit.main(["--model_name_or_path", str(tmp_path / "model"), "--task_name", "rte", "--glue_dir",
                            str(glue_dir), "--max_seq_length", "32", "--policy", "entropy", "--thresholds", "0,1",
                            "--latency_rows", "5", "--output_dir", str(out), "--save_setting", "0.4"])  # fmt: skip
    by_name = {row["setting"]: row for row in rows}
    assert set(by_name) == {"entropy 0", "entropy 1", "exit 1 (fixed depth)", "exit 2 (fixed depth)",
                            "exit 4 (fixed depth)"}  # fmt: skip
    assert by_name["entropy 1"]["mean_layers"] == 1 and by_name["entropy 0"]["mean_layers"] == 4
    assert by_name["entropy 1"]["accuracy"] == by_name["exit 1 (fixed depth)"]["accuracy"]
    assert by_name["entropy 0"]["accuracy"] == by_name["exit 4 (fixed depth)"]["accuracy"]
    assert by_name["exit 2 (fixed depth)"]["mean_layers"] == 2
    assert all(row["latency_b1_ms"] > 0 for row in rows)
    assert (out / "early_exit.png").stat().st_size > 0 and "| entropy 1 |" in (out / "early_exit.md").read_text()
    assert json.loads((out / "early_exit.json").read_text()) == rows
    saved = AutoModelForSequenceClassification.from_pretrained(tmp_path / "model").config
    assert (saved.exit_policy, saved.exit_threshold) == ("entropy", 0.4)
    torch.manual_seed(0)
    stock(tokenizer).save_pretrained(tmp_path / "plain")
    with pytest.raises(ValueError, match="not a multi-exit BERT"):
        early_exit.main(["--model_name_or_path", str(tmp_path / "plain"), "--task_name", "rte", "--glue_dir",
                         str(glue_dir), "--output_dir", str(out)])  # fmt: skip
    with pytest.raises(ValueError, match="normalised entropy in"):
        early_exit.main(["--model_name_or_path", str(tmp_path / "model"), "--task_name", "rte", "--glue_dir",
                         str(glue_dir), "--thresholds", "0", "--latency_rows", "2", "--output_dir", str(out),
                         "--save_setting", "1.5"])  # fmt: skip
    with pytest.raises(ValueError, match="regression task"):
        early_exit.main(["--model_name_or_path", str(tmp_path / "model"), "--task_name", "stsb", "--glue_dir",
                         str(glue_dir), "--output_dir", str(out)])  # fmt: skip
