"""DynaBERT: importance against references, exact rewiring, elastic settings, export, the trainer, the grid."""

import functools
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_methods import one_batch
from transformers import AutoModelForSequenceClassification, BertForSequenceClassification

from bertdistill.compression import (
    Importance,
    choose_setting,
    compute_importance,
    count_setting_parameters,
    elastic_setting,
    export_subnetwork,
    kept_layers,
    make_elastic,
    rewire,
)
from bertdistill.compression.pruned_bert import PrunedBertForSequenceClassification

from conftest import load_script, make_teacher, save_with_tokenizer, tiny_config
from test_trainer import assert_batch_accumulation_invariance, make_trainer, tiny_dataset

SETTINGS = [(w, d) for w in (0.25, 0.5, 0.75, 1.0) for d in (0.5, 0.75, 1.0)]


def batches(tokenizer, n=8, size=4, seed=0):
    data = tiny_dataset(tokenizer, n=n, seed=seed)
    rows = [data[i] for i in range(n)]
    out = []
    for start in range(0, n, size):
        chunk = rows[start : start + size]
        padded = tokenizer.pad(
            [{k: r[k] for k in ("input_ids", "attention_mask")} for r in chunk], return_tensors="pt"
        )
        out.append({**padded, "labels": torch.tensor([r["label"] for r in chunk])})
    return out


def test_depth_rule_is_dynabert_s():
    assert kept_layers(12, 0.5) == [0, 2, 4, 6, 8, 10]
    assert kept_layers(12, 0.75) == [0, 1, 2, 4, 5, 6, 8, 9, 10]  # drops 3, 7, 11: (l + 1) mod 4 == 0
    assert kept_layers(6, 0.5) == [0, 2, 4]
    assert kept_layers(6, 1.0) == list(range(6))
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        kept_layers(6, 1.5)


@pytest.mark.parametrize("gradients", ["per_batch", "cumulative"])
def test_importance_matches_a_reference_from_the_definitions(tokenizer, gradients):
    model = make_teacher(tokenizer, dropout=0.0)
    data = batches(tokenizer)
    importance = compute_importance(model, data, progress=False, gradients=gradients)
    assert all(p.grad is None for p in model.parameters()) and model.training  # left as found
    bert = model.bert
    heads, size = 4, 8
    ref_heads = torch.zeros(4, heads)
    ref_neurons = torch.zeros(4, 64)
    # DynaBERT's code never zeroes gradients: each batch then sees the gradient summed over the batches so far.
    running_heads = torch.zeros(4, heads)
    model.zero_grad()
    for batch in data:
        # Head h: dL/d(gate_h) at gate 1 = <context_h, dL/dcontext_h>, read from the attention output's gradient.
        contexts = []

        def keep(module, args, output, contexts=contexts):
            output[0].retain_grad()
            contexts.append(output[0])

        hooks = [layer.attention.self.register_forward_hook(keep) for layer in bert.encoder.layer]
        if gradients == "per_batch":
            model.zero_grad()
            running_heads.zero_()
        model(**batch).loss.backward()
        for hook in hooks:
            hook.remove()
        for index, context in enumerate(contexts):
            per_head = (context * context.grad).reshape(*context.shape[:-1], heads, size).sum(dim=(0, 1, 3))
            running_heads[index] += per_head
            ref_heads[index] += running_heads[index].abs()
            inner, outer = bert.encoder.layer[index].intermediate.dense, bert.encoder.layer[index].output.dense
            for j in range(64):
                row = (
                    sum(inner.weight[j, k] * inner.weight.grad[j, k] for k in range(32))
                    + inner.bias[j] * inner.bias.grad[j]
                )
                column = sum(outer.weight[k, j] * outer.weight.grad[k, j] for k in range(32))
                ref_neurons[index, j] += row.abs().detach() + column.abs().detach()
    torch.testing.assert_close(importance.heads, ref_heads, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(importance.neurons, ref_neurons, rtol=1e-4, atol=1e-7)
    if gradients == "cumulative":
        per_batch = compute_importance(model, data, progress=False)
        assert not torch.allclose(per_batch.neurons, importance.neurons)


def test_rewiring_keeps_outputs_and_sorts_importance(tokenizer):
    model = make_teacher(tokenizer, dropout=0.0).eval()
    data = batches(tokenizer)
    before = [model(**b).logits for b in data]
    importance = compute_importance(model, data, progress=False)
    rewire(model, importance)
    for b, logits in zip(data, before):
        torch.testing.assert_close(model(**b).logits, logits, rtol=1e-5, atol=1e-6)
    again = compute_importance(model, data, progress=False)  # the permuted network: most important first
    torch.testing.assert_close(again.heads, importance.heads.sort(dim=1, descending=True).values, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(again.neurons, importance.neurons.sort(dim=1, descending=True).values, rtol=1e-3,
                               atol=1e-6)  # fmt: skip
    assert model.config.dynabert_rewired


def test_settings_switch_without_copies_and_exports_give_the_same_logits(tokenizer, tmp_path):
    model = make_teacher(tokenizer, dropout=0.0).eval()
    (batch,) = batches(tokenizer, n=4)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    full = model(**inputs).logits
    rewire(model, Importance(torch.rand(4, 4), torch.rand(4, 64)))
    make_elastic(model)
    pointers = {k: v.data_ptr() for k, v in model.state_dict().items()}
    torch.testing.assert_close(model(**inputs).logits, full, rtol=1e-5, atol=1e-6)
    outputs = {}
    for width, depth in SETTINGS:
        with elastic_setting(model, width, depth):
            outputs[width, depth] = model(**inputs).logits
        sub = export_subnetwork(model, width, depth)
        assert isinstance(sub, PrunedBertForSequenceClassification if width < 1 else BertForSequenceClassification)
        assert sub.config.num_hidden_layers == len(kept_layers(4, depth))
        assert sum(p.numel() for p in sub.parameters()) == count_setting_parameters(model, width, depth)
        torch.testing.assert_close(sub(**inputs).logits, outputs[width, depth], rtol=1e-5, atol=1e-6)
    assert {k: v.data_ptr() for k, v in model.state_dict().items()} == pointers  # no weight copies
    assert len({tuple(v.flatten().tolist()) for v in outputs.values()}) == len(SETTINGS)
    sizes = [count_setting_parameters(model, w, d) for w, d in SETTINGS]
    assert max(sizes) == sum(p.numel() for p in model.parameters())

    # A width-pruned export loads through the Auto classes, and without bertdistill via trust_remote_code.
    sub = export_subnetwork(model, 0.5, 0.75)
    sub.save_pretrained(tmp_path / "sub")
    config = json.loads((tmp_path / "sub" / "config.json").read_text())
    # The names exports made before the format moved into bertdistill.compression carry too.
    assert config["auto_map"] == {
        "AutoConfig": "pruned_bert.PrunedBertConfig",
        "AutoModelForSequenceClassification": "pruned_bert.PrunedBertForSequenceClassification",
    }
    assert (tmp_path / "sub" / "pruned_bert.py").is_file()
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "sub")
    torch.testing.assert_close(reloaded(**inputs).logits, outputs[0.5, 0.75], rtol=1e-5, atol=1e-6)
    torch.save(inputs, tmp_path / "inputs.pt")
    code = (
        "import sys, torch\n"
        "from transformers import AutoModelForSequenceClassification\n"
        f"m = AutoModelForSequenceClassification.from_pretrained({str(tmp_path / 'sub')!r}, trust_remote_code=True)\n"
        "assert 'bertdistill' not in sys.modules, 'bertdistill was imported'\n"
        f"print(m(**torch.load({str(tmp_path / 'inputs.pt')!r})).logits.tolist())\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                            env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    remote = torch.tensor(json.loads(result.stdout.strip().splitlines()[-1]))
    torch.testing.assert_close(remote, outputs[0.5, 0.75], rtol=1e-5, atol=1e-6)


def test_hidden_states_of_a_shallow_setting_pair_with_the_full_model_s():
    from bertdistill.trainers.dynabert_trainer import sub_network_layer_map

    # 6 layers at depth 0.5 keep 0, 2, 4: their outputs (hidden states 1, 3, 5) learn from the full model's output
    # just before the next kept layer (2, 4) and from its last output (6).
    pairs = [(m.student_layer, m.teacher_layer) for m in sub_network_layer_map(6, 0.5)]
    assert pairs == [(0, 0), (1, 2), (3, 4), (5, 6)]
    assert [(m.student_layer, m.teacher_layer) for m in sub_network_layer_map(4, 1.0)] == [(i, i) for i in range(5)]


def dynabert_trainer(tmp_path, tokenizer, student_seed: int = 0, teacher_rewired: bool = False, **config):
    teacher = make_teacher(tokenizer, dropout=0.0)
    teacher.config.dynabert_rewired = teacher_rewired  # (a width stage's output says so in its config)
    student = make_teacher(tokenizer, dropout=0.0, seed=student_seed)  # seed 0: a copy of the teacher
    return make_trainer(tmp_path, tokenizer, teacher=teacher, student=student, method="dynabert", **config)


@pytest.mark.parametrize("matched", [True, False], ids=["width-matched-teacher", "full-teacher"])
def test_a_step_sums_the_gradients_of_every_sub_network(tmp_path, tokenizer, matched):
    # The student differs from the teacher (another seed), so that every sub-network has something to learn.
    trainer = dynabert_trainer(tmp_path, tokenizer, student_seed=1, teacher_rewired=True, stage="width_depth",
                               rewire=False, alpha_ce=0.5, width_matched_teacher=matched)  # fmt: skip
    settings = trainer.args.settings()
    assert len(settings) == 12 and settings[-1] == (1.0, 1.0)
    batch = trainer._prepare_inputs(one_batch(trainer))
    student, teacher = trainer.student, trainer.teacher
    # Reference: each sub-network's loss written out from the paper, back-propagated one by one; the paper's
    # teacher for width w is the width stage's model cut to width w at full depth (here a physically smaller copy).
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        full = teacher(**inputs, output_hidden_states=True)
        by_width = {w: export_subnetwork(teacher, w, 1.0)(**inputs, output_hidden_states=True) for w, _ in settings}
    reference = {n: torch.zeros_like(p) for n, p in student.named_parameters()}
    total = 0.0
    for width, depth in settings:
        t = by_width[width] if matched else full
        student.zero_grad()
        with elastic_setting(student, width, depth):
            s = student(**inputs, output_hidden_states=True)
        kept = kept_layers(4, depth)
        pred = -(t.logits.softmax(-1) * s.logits.log_softmax(-1)).sum(-1).mean()
        s_states = [s.hidden_states[0]] + [s.hidden_states[k + 1] for k in kept]
        t_states = [t.hidden_states[0]] + [t.hidden_states[k] for k in kept[1:]] + [t.hidden_states[4]]
        mask = batch["attention_mask"].float()
        hidden = sum(
            (((a - b) ** 2).mean(-1) * mask).sum(1).div(mask.sum(1)).mean() for a, b in zip(s_states, t_states)
        )
        ce = torch.nn.functional.cross_entropy(s.logits, batch["labels"])
        (pred + hidden + 0.5 * ce).backward()
        total += (pred + hidden + 0.5 * ce).item()
        for n, p in student.named_parameters():
            if p.grad is not None:
                reference[n] += p.grad
    student.zero_grad()
    trainer.current_gradient_accumulation_steps = 1  # what the training loop sets before each step
    loss = trainer.training_step(trainer.model, batch)
    for n, p in student.named_parameters():
        torch.testing.assert_close(p.grad, reference[n], rtol=1e-4, atol=1e-6)
    # The base training_step back-propagates the full model; the step's loss is the sum over sub-networks.
    assert loss.item() == pytest.approx(total, rel=1e-4) and trainer._loss_count == 12


def test_batch_times_accumulation_invariance(tmp_path, tokenizer):
    make = functools.partial(dynabert_trainer, tokenizer=tokenizer, rewire=False)
    assert_batch_accumulation_invariance(make, tmp_path)


def test_width_stage_rewires_first_and_logs_components(tmp_path, tokenizer):
    trainer = dynabert_trainer(tmp_path, tokenizer, max_steps=2, importance_samples=8)
    assert trainer.student.config.dynabert_rewired
    heads = trainer.importance.heads
    assert heads.shape == (4, 4)
    trainer.train()
    logs = [log for log in trainer.state.log_history if "loss" in log]
    assert logs and all({"loss_pred", "loss_hidden"} <= set(log) for log in logs)
    with pytest.raises(ValueError, match="split_stages"):
        dynabert_trainer(tmp_path, tokenizer, stage="both")
    with pytest.raises(ValueError, match="must include 1.0"):
        dynabert_trainer(tmp_path, tokenizer, width_mult_list=[0.5, 0.75])


def test_final_stage_trains_every_sub_network_on_gold_labels_without_the_teacher(tmp_path, tokenizer):
    from bertdistill import DynaBertConfig

    stages = DynaBertConfig(output_dir=str(tmp_path / "d"), stage="both", final_num_train_epochs=2,
                            final_learning_rate=1e-5, report_to=[]).split_stages()  # fmt: skip
    assert [(c.stage, Path(c.output_dir).name, c.num_train_epochs) for c in stages] == [
        ("width", "d-width", 3.0), ("width_depth", "d-width_depth", 3.0), ("final", "d", 2)]  # fmt: skip
    assert stages[2].learning_rate == 1e-5 and not stages[1].load_best_model_at_end
    assert len(DynaBertConfig(output_dir="d", stage="both", report_to=[]).split_stages()) == 2
    with pytest.raises(ValueError, match="final_num_train_epochs"):
        DynaBertConfig(output_dir="d", final_num_train_epochs=-1, report_to=[])

    trainer = dynabert_trainer(tmp_path, tokenizer, stage="final", rewire=False)
    trainer.teacher.forward = None  # the final stage must never run the teacher
    batch = trainer._prepare_inputs(one_batch(trainer))
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    student = trainer.student
    reference = {n: torch.zeros_like(p) for n, p in student.named_parameters()}
    for width, depth in SETTINGS:
        student.zero_grad()
        with elastic_setting(student, width, depth):
            torch.nn.functional.cross_entropy(student(**inputs).logits, batch["labels"]).backward()
        for n, p in student.named_parameters():
            if p.grad is not None:
                reference[n] += p.grad
    student.zero_grad()
    trainer.current_gradient_accumulation_steps = 1  # what the training loop sets before each step
    trainer.training_step(trainer.model, batch)
    for n, p in student.named_parameters():
        torch.testing.assert_close(p.grad, reference[n], rtol=1e-4, atol=1e-6)
    assert set(trainer._loss_sums) == {"ce"} and trainer._loss_count == 12


def test_setups_that_cannot_back_propagate_each_sub_network_are_refused(tmp_path, tokenizer):
    with pytest.raises(ValueError, match="LOMO optimisers"):
        dynabert_trainer(tmp_path, tokenizer, rewire=False, optim="lomo")


def test_distill_glue_both_stages_then_grid_and_export(teacher_dir, glue_dir, tmp_path):
    from test_scripts import distill_args, distill_glue

    out = tmp_path / "dyna"
    metrics = distill_glue.main(distill_args(teacher_dir, glue_dir, out, "rte", "--method", "dynabert", "--stage",
                                             "both", "--importance_samples", "16", "--final_num_train_epochs",
                                             "1"))  # fmt: skip
    assert "eval_accuracy" in metrics
    width_stage = AutoModelForSequenceClassification.from_pretrained(tmp_path / "dyna-width")
    width_depth = AutoModelForSequenceClassification.from_pretrained(tmp_path / "dyna-width_depth")
    final = AutoModelForSequenceClassification.from_pretrained(out)
    assert width_stage.config.dynabert_rewired and final.config.num_hidden_layers == 4
    changed = [not torch.equal(a, b) for a, b in zip(width_depth.parameters(), final.parameters())]
    assert any(changed)  # the final stage trained on top of the width-and-depth stage

    grid = load_script("dynabert_grid")
    budget = str(count_setting_parameters(final, 0.5, 1.0))
    rows = grid.main(["--model_dir", str(out), "--task_name", "rte", "--glue_dir", str(glue_dir), "--max_eval_samples",
                      "16", "--max_seq_length", "32", "--latency_repeats", "2", "--max_parameters", budget,
                      "--export_dir", str(tmp_path / "small"), "--widths", "0.25", "0.5", "1.0", "--depths", "0.5",
                      "1.0"])  # fmt: skip
    assert len(rows) == 6 and (out / "grid" / "grid.png").stat().st_size > 1000
    chosen = choose_setting(rows, "accuracy", max_parameters=count_setting_parameters(final, 0.5, 1.0))
    small = AutoModelForSequenceClassification.from_pretrained(tmp_path / "small")
    assert sum(p.numel() for p in small.parameters()) == chosen["parameters"]
    with pytest.raises(ValueError, match=r"Nothing fits the budget \(parameters <= 10\): the smallest parameters is "
                                         r"width 0.25, depth 0.5's"):  # fmt: skip
        choose_setting(rows, "accuracy", max_parameters=10)


def test_stage_weights_and_width_matched_teacher_needs_the_width_stage_model(tmp_path, tokenizer):
    from bertdistill import DynaBertConfig

    def config(**kwargs):
        return DynaBertConfig(output_dir=str(tmp_path), report_to=[], **kwargs)

    # The authors' lambda_2: 0.1 in the width stage, 1.0 in the width-and-depth stage.
    width, width_depth = config(stage="both").split_stages()
    assert (width.stage_alpha_hidden(), width_depth.stage_alpha_hidden()) == (0.1, 1.0)
    assert config(stage="width", width_alpha_hidden=None, alpha_hidden=0.7).stage_alpha_hidden() == 0.7
    with pytest.raises(ValueError, match="width_alpha_hidden must be >= 0"):
        config(width_alpha_hidden=-1.0)
    with pytest.raises(ValueError, match="must be the width stage's"):
        dynabert_trainer(tmp_path, tokenizer, stage="width_depth", rewire=False)
    trainer = dynabert_trainer(tmp_path, tokenizer, stage="width_depth", rewire=False, width_matched_teacher=False)
    assert not trainer.uses_width_matched_teacher()


def test_regression_task_all_stages_and_grid(tokenizer, glue_dir, tmp_path):
    from test_scripts import distill_args, distill_glue

    teacher = make_teacher(tokenizer, num_labels=1)
    teacher.save_pretrained(tmp_path / "teacher")
    tokenizer.save_pretrained(tmp_path / "teacher")
    out = tmp_path / "dyna"
    metrics = distill_glue.main(distill_args(tmp_path / "teacher", glue_dir, out, "stsb", "--method", "dynabert",
                                             "--stage", "both", "--importance_samples", "16",
                                             "--final_num_train_epochs", "1"))  # fmt: skip
    assert {"eval_pearson", "eval_spearmanr"} <= set(metrics)
    rows = load_script("dynabert_grid").main([
        "--model_dir", str(out), "--task_name", "stsb", "--glue_dir", str(glue_dir), "--max_eval_samples", "16",
        "--max_seq_length", "32", "--latency_repeats", "1", "--widths", "0.5", "1.0", "--depths", "0.5", "1.0",
    ])  # fmt: skip
    assert len(rows) == 4 and all(-1 <= r["pearson"] <= 1 for r in rows)


def test_check_dynabert_compares_seed_means_and_reports_stage_diagnostics(tmp_path, tokenizer, glue_dir, capsys):
    """scripts/checks/check_dynabert.py on a tiny teacher and a few real RTE rows, two seeds, with the final step: the
    verdict compares the means of the seeds' scores read from the runs' own results, and both diagnostic columns
    (width stage only, before the final fine-tuning) are filled from the stages' saved models. With --select_rows,
    each model is picked among its candidates by the held-out rows' score, and the candidates' dev scores are those
    of the same models evaluated by the grid (DynaBERT) and by the training run (the baseline's last epoch)."""
    check = load_script("checks/check_dynabert")
    check.BOOTSTRAP_RESAMPLES = 100  # the intervals' values are not checked here, only what they are about
    teacher = tmp_path / "teachers" / "rte" / "teacher"
    save_with_tokenizer(BertForSequenceClassification(tiny_config(len(tokenizer), layers=4)), tokenizer, teacher)
    (teacher / "eval_results.json").write_text(json.dumps({"eval_accuracy": 0.5}))
    report = tmp_path / "check.md"
    argv = ["--glue_dir", str(glue_dir), "--tasks", "rte", "--teacher_root", str(tmp_path / "teachers"),
            "--output_dir", str(tmp_path / "runs"), "--report", str(report), "--max_train_samples", "32",
            "--max_eval_samples", "16", "--importance_samples", "16", "--epochs", "1", "--final_epochs", "1",
            "--select_rows", "16", "--seeds", "42", "43"]  # fmt: skip
    check.main(argv)
    rows = json.loads(report.with_suffix(".json").read_text())["rows"]
    assert [(r["width_mult"], r["depth_mult"]) for r in rows] == [(0.5, 1.0), (1.0, 0.5)]
    for row in rows:
        label = f"w{row['width_mult']:g}-d{row['depth_mult']:g}"
        for seed in ("42", "43"):
            # With --select_rows one training serves both: the plain baseline is the last epoch of the run that
            # keeps a checkpoint per epoch.
            seed_root = tmp_path / "runs" / "rte" / f"seed{seed}"
            tuned = json.loads((seed_root / f"baseline-{label}-epochs" / "eval_results.json").read_text())
            assert row["baseline_by_seed"][seed] == tuned["eval_accuracy"]
            assert not (seed_root / f"baseline-{label}").exists()
        for key in ("dynabert", "baseline", "before_final"):
            assert set(row[f"{key}_by_seed"]) == {"42", "43"}
            assert row[key] == pytest.approx(sum(row[f"{key}_by_seed"].values()) / 2)
        assert row["beats_baseline"] == (row["dynabert"] > row["baseline"])
    assert set(rows[0]["width_stage_by_seed"]) == {"42", "43"} and rows[1]["width_stage"] is None
    for row in rows:
        choice = row["selection"]
        for seed in ("42", "43"):
            for who in ("dynabert", "baseline"):
                candidates = choice["candidates"][seed][who]
                best = max(s["held_out"] for s in candidates.values())
                first_best = next(name for name, s in candidates.items() if s["held_out"] == best)
                assert choice["picked"][who][seed] == {"candidate": first_best, **candidates[first_best]}
            dynabert, baseline = choice["candidates"][seed]["dynabert"], choice["candidates"][seed]["baseline"]
            assert list(dynabert) == ["after final", "before final"] and list(baseline) == ["epoch 3", "epoch 2",
                                                                                            "epoch 1"]  # fmt: skip
            assert dynabert["after final"]["dev"] == pytest.approx(row["dynabert_by_seed"][seed])
            assert dynabert["before final"]["dev"] == pytest.approx(row["before_final_by_seed"][seed])
            assert baseline["epoch 3"]["dev"] == pytest.approx(row["baseline_by_seed"][seed])
        means = {who: sum(p["dev"] for p in choice["picked"][who].values()) / 2 for who in ("dynabert", "baseline")}
        assert choice["dynabert"] == pytest.approx(means["dynabert"])
        assert choice["baseline"] == pytest.approx(means["baseline"])
        assert choice["beats_baseline"] == (choice["dynabert"] > choice["baseline"])
        # The bootstrap intervals are about the very models each verdict compares (their dev predictions, re-scored).
        for verdict in (row, choice):
            interval = verdict["interval"]
            assert interval["difference"] == pytest.approx(verdict["dynabert"] - verdict["baseline"])
            assert interval["low"] <= interval["high"]
    text = report.read_text()
    assert text.count("difference (95% CI)") == 2 and "paired percentile bootstrap" in text
    assert "before the final fine-tuning |" in text and "| rte | 0.5 | 1 |" in text and "42, 43" in text
    assert "With model selection on the last 16 training rows" in text and "--select_rows 16" in text

    # Run again: nothing is trained, every grid (2 seeds x model, width stage, width-and-depth stage) is read back.
    grids = sorted((tmp_path / "runs" / "rte").glob("seed*/grid*/grid.json")) + [
        tmp_path / "check" / "rte" / "grid.json"
    ]
    stamps = {path: path.stat().st_mtime_ns for path in grids}
    capsys.readouterr()
    check.main(argv)
    assert capsys.readouterr().out.count("kept (same weights, same arguments)") == 6 == len(grids)
    assert {path: path.stat().st_mtime_ns for path in grids} == stamps
    assert json.loads(report.with_suffix(".json").read_text())["rows"] == rows

    # A check stopped part-way: --report_only reports each task at its finished seeds, trains nothing (no seed 44,
    # no STS-B teacher trained), and says which tasks are short of seeds.
    partial = [*argv[: argv.index("--tasks") + 1], "rte", "stsb", *argv[argv.index("--tasks") + 2 : -3],
               "--seeds", "42", "43", "44", "--report_only"]  # fmt: skip
    capsys.readouterr()
    check.main(partial)
    assert "stsb: no seed with every run finished" in capsys.readouterr().out
    assert not (tmp_path / "runs" / "rte" / "seed44").exists() and not (tmp_path / "teachers" / "stsb").exists()
    assert json.loads(report.with_suffix(".json").read_text())["rows"] == rows, "the same seeds, the same numbers"
    text = report.read_text()
    assert (
        "Reported before every run had finished: rte at seed(s) 42, 43 only" in text
        and "--seeds 42 43 44 --select_rows 16`" in text
    )


def test_check_dynabert_refuses_a_selection_that_could_see_trained_rows(tmp_path, glue_dir):
    check = load_script("checks/check_dynabert")
    base = ["--glue_dir", str(glue_dir), "--tasks", "rte", "--teacher_root", str(tmp_path / "none"),
            "--output_dir", str(tmp_path / "runs"), "--report", str(tmp_path / "check.md")]  # fmt: skip
    with pytest.raises(ValueError, match="give --final_epochs and --max_train_samples"):
        check.main([*base, "--select_rows", "100", "--max_train_samples", "500"])
    teacher = tmp_path / "none" / "rte" / "teacher"
    with pytest.raises(ValueError, match="rte has 2490 training rows: the last --select_rows 1000 would overlap"):
        check.selection_splits(check.get_task("rte"), check.argparse.Namespace(
            glue_dir=str(glue_dir), select_rows=1000, max_train_samples=1500, max_eval_samples=None
        ), teacher, 128)  # fmt: skip
    assert not (tmp_path / "runs").exists()


def test_check_dynabert_runs_a_hub_only_task_and_says_how_to_load_it(tmp_path, tokenizer, glue_dir):
    """QNLI, QQP and MNLI have no local training set here: the check says, before anything trains, how to load them
    from the Hub; given the files it runs them with their own budget (the baselines train 1 epoch, as their
    teachers). The classic-layout QNLI folder here is a stand-in built from real QNLI dev rows (96 as "train", 32 as
    "dev"): the Hub's split cannot be reached offline, and this only exercises the check's handling of the task."""
    check = load_script("checks/check_dynabert")
    with pytest.raises(FileNotFoundError, match=r'QNLI/train\.tsv.*--glue_dir ""'):
        check.main(["--glue_dir", str(glue_dir), "--tasks", "rte", "qnli", "--output_dir", str(tmp_path / "runs"),
                    "--teacher_root", str(tmp_path / "teachers"), "--report", str(tmp_path / "check.md")])  # fmt: skip
    assert not (tmp_path / "runs").exists() and not (tmp_path / "teachers").exists(), "nothing ran before the error"

    lines = (glue_dir / "QNLI" / "dev.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
    local = tmp_path / "glue" / "QNLI"
    local.mkdir(parents=True)
    (local / "train.tsv").write_text("".join(lines[:97]), encoding="utf-8")
    (local / "dev.tsv").write_text("".join(lines[:1] + lines[97:129]), encoding="utf-8")
    teacher = tmp_path / "teachers" / "qnli" / "teacher"
    save_with_tokenizer(BertForSequenceClassification(tiny_config(len(tokenizer), layers=4)), tokenizer, teacher)
    (teacher / "eval_results.json").write_text(json.dumps({"eval_accuracy": 0.5}))
    report = tmp_path / "check.md"
    check.main(["--glue_dir", str(tmp_path / "glue"), "--tasks", "qnli", "--teacher_root", str(tmp_path / "teachers"),
                "--output_dir", str(tmp_path / "runs"), "--report", str(report), "--max_train_samples", "32",
                "--max_eval_samples", "16", "--importance_samples", "16", "--seeds", "42"])  # fmt: skip
    rows = json.loads(report.with_suffix(".json").read_text())["rows"]
    assert [(r["task"], r["width_mult"], r["depth_mult"]) for r in rows] == [("qnli", 0.5, 1.0), ("qnli", 1.0, 0.5)]
    seed_root = tmp_path / "runs" / "qnli" / "seed42"
    for label in ("w0.5-d1", "w1-d0.5"):
        state = json.loads((seed_root / f"baseline-{label}" / "trainer_state.json").read_text())
        assert state["epoch"] == 1 and state["global_step"] == 1, "1 epoch of the 32 rows at batch 32"
    text = report.read_text()
    assert "the teacher's recipe (1 epoch, learning rate 5e-5)" in text and "| qnli | 0.5 | 1 |" in text


def test_check_dynabert_baseline_folder(tmp_path):
    """With --select_rows a new check trains each baseline once (one checkpoint per epoch); a check run before
    --select_rows existed keeps reading its plain baseline."""
    check = load_script("checks/check_dynabert")
    assert check.baseline_folder(tmp_path, "w0.5-d1", select=False) == tmp_path / "baseline-w0.5-d1"
    assert check.baseline_folder(tmp_path, "w0.5-d1", select=True) == tmp_path / "baseline-w0.5-d1-epochs"
    (tmp_path / "baseline-w0.5-d1").mkdir()
    (tmp_path / "baseline-w0.5-d1" / "eval_results.json").write_text("{}")
    assert check.baseline_folder(tmp_path, "w0.5-d1", select=True) == tmp_path / "baseline-w0.5-d1"
