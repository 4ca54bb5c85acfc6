"""Deep mutual learning: the loss against the paper's formula (2 and 3 networks, with and without a teacher), each
network learning only from its own terms, the peers trained, checkpointed and resumed in the wrapper's extras, batch x
accumulation invariance, the CLI (every network its own checkpoint, metrics and card) and the errors."""

import functools
import json
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForSequenceClassification, BertForSequenceClassification

from bertdistill import DMLConfig, DMLTrainer, build_student

from conftest import make_teacher, tiny_config
from test_trainer import assert_batch_accumulation_invariance, assert_resumes_like, state, tiny_dataset


def network(tokenizer, seed, layers=2, dropout=0.0, num_labels=2):
    torch.manual_seed(seed)
    config = tiny_config(len(tokenizer), num_labels=num_labels, layers=layers, dropout=dropout)
    if num_labels == 1:
        config.problem_type = "regression"
    return BertForSequenceClassification(config)


def dml_trainer(tmp_path, tokenizer, student=None, peers=None, teacher=None, callbacks=None, num_labels=2, **config):
    defaults = dict(
        output_dir=str(tmp_path), per_device_train_batch_size=4, per_device_eval_batch_size=8, learning_rate=1e-3,
        max_steps=4, logging_steps=1, save_strategy="no", report_to=[], disable_tqdm=True, seed=3, use_cpu=True,
        bf16=False, train_sampling_strategy="random", cache_teacher_logits=False,
    )  # fmt: skip
    data = tiny_dataset(tokenizer, n=16, num_labels=num_labels)
    return DMLTrainer(
        model=student if student is not None else network(tokenizer, 1, num_labels=num_labels),
        teacher_model=teacher,
        args=DMLConfig(**{**defaults, **config}),
        peers=peers,
        train_dataset=data,
        eval_dataset=data,
        processing_class=tokenizer,
        callbacks=callbacks,
    )


def batch(tokenizer):
    encoded = tokenizer(["the movie was good", "a bad bad film of it", "it is", "not good and not bad at all"],
                        padding=True, return_tensors="pt")  # fmt: skip
    return {**{k: encoded[k] for k in ("input_ids", "attention_mask", "token_type_ids")},
            "labels": torch.tensor([1, 0, 1, 0])}  # fmt: skip


def kl(p_logits, q_logits, t):
    """T^2 KL(softmax(p/T) || softmax(q/T)) per row, summed over classes by hand, averaged over rows."""
    rows = []
    for p_row, q_row in zip(p_logits, q_logits):
        p, q = torch.softmax(p_row / t, 0), torch.softmax(q_row / t, 0)
        rows.append(sum(p[c] * (torch.log(p[c]) - torch.log(q[c])) for c in range(len(p))))
    return t**2 * sum(rows) / len(rows)


def ce(logits, labels):
    return sum(-(z[y] - torch.logsumexp(z, 0)) for z, y in zip(logits, labels)) / len(labels)


@pytest.mark.parametrize("peers, with_teacher", [(1, False), (2, False), (1, True)])
def test_dml_loss_matches_the_paper(tmp_path, tokenizer, peers, with_teacher):
    """Network k: CE + 1/(K-1) sum over the others of KL(p_l || p_k) (+ KD from the teacher), at T = 2 here."""
    teacher = make_teacher(tokenizer, dropout=0.0) if with_teacher else None
    nets = [network(tokenizer, seed) for seed in range(1, peers + 2)]
    trainer = dml_trainer(tmp_path, tokenizer, student=nets[0], peers=nets[1:], teacher=teacher, temperature=2.0,
                          dml_num_peers=peers)  # fmt: skip
    wrapper = trainer.model.train()
    inputs = batch(tokenizer)
    loss, outputs = trainer.compute_loss(wrapper, dict(inputs), return_outputs=True)
    plain = {k: v for k, v in inputs.items() if k != "labels"}
    logits = [net(**plain).logits for net in nets]
    teacher_logits = teacher(**plain).logits if teacher is not None else None
    expected = 0.0
    for k, z in enumerate(logits):
        others = [logits[j].detach() for j in range(len(nets)) if j != k]
        mutual = sum(kl(o, z, 2.0) for o in others) / len(others)
        torch.testing.assert_close(outputs.loss_components[f"ce_{k}"], ce(z, inputs["labels"]))
        torch.testing.assert_close(outputs.loss_components[f"dml_{k}"], mutual)
        expected = expected + ce(z, inputs["labels"]) + mutual
        if teacher is not None:
            kd = kl(teacher_logits, z, 2.0)
            torch.testing.assert_close(outputs.loss_components[f"kd_{k}"], kd)
            expected = expected + kd
    torch.testing.assert_close(loss, expected)
    # network 0's mutual term trains network 0 only: the peers' predictions in it are targets
    peer_params = list(wrapper.extras["peer_1"].parameters())
    grads = torch.autograd.grad(outputs.loss_components["dml_0"], peer_params, allow_unused=True, retain_graph=True)
    assert all(g is None or not g.any() for g in grads)


def test_dml_trains_every_network_and_resumes(tmp_path, tokenizer):
    def make(folder, **config):
        return dml_trainer(folder, tokenizer, student=network(tokenizer, 1, dropout=0.1), max_steps=6,
                           save_strategy="steps", save_steps=3, **config)  # fmt: skip

    full = make(tmp_path / "full")
    # default peer: a copy of the student with a freshly initialised classifier
    assert full.extra_network_names() == ["peer_1"]
    peer = full.extra_network("peer_1")
    assert torch.equal(
        peer.bert.embeddings.word_embeddings.weight, full.student.bert.embeddings.word_embeddings.weight
    )
    assert not torch.equal(peer.classifier.weight, full.student.classifier.weight)
    before = state(full.model)
    full.train()
    after = state(full.model)
    changed = {k.split(".")[0] + "." + k.split(".")[1] for k, v in after.items() if not torch.equal(v, before[k])}
    assert "extras.peer_1" in changed and any(k.startswith("student.") for k in changed)
    logged = [row for row in full.state.log_history if "loss" in row]
    assert all({"loss_ce_0", "loss_ce_1", "loss_dml_0", "loss_dml_1"} <= set(row) for row in logged)
    assert_resumes_like(full, make, tmp_path, 3)


def test_dml_batch_times_accumulation_invariance(tmp_path, tokenizer):
    make = functools.partial(dml_trainer, tokenizer=tokenizer)
    assert_batch_accumulation_invariance(make, tmp_path, part=lambda t: t.model, moved=lambda k: "peer_1" in k)


def test_dml_regression_uses_mse_between_networks(tmp_path, tokenizer):
    trainer = dml_trainer(tmp_path, tokenizer, num_labels=1)
    wrapper = trainer.model.train()
    inputs = {**batch(tokenizer), "labels": torch.tensor([0.5, 2.0, 1.0, 4.0])}
    _, outputs = trainer.compute_loss(wrapper, dict(inputs), return_outputs=True)
    plain = {k: v for k, v in inputs.items() if k != "labels"}
    z0, z1 = wrapper.student(**plain).logits, wrapper.extras["peer_1"](**plain).logits
    torch.testing.assert_close(outputs.loss_components["dml_0"], ((z0 - z1) ** 2).mean())


def test_dml_errors(tmp_path, tokenizer):
    with pytest.raises(ValueError, match="K >= 2 networks"):
        DMLConfig(str(tmp_path), dml_num_peers=0)
    with pytest.raises(ValueError, match="not both"):
        DMLConfig(str(tmp_path), dml_peer_layers="0,1", dml_peers_from="a")
    with pytest.raises(ValueError, match="dml_num_peers is 3 but 1 peers are given"):
        DMLConfig(str(tmp_path), dml_peer_layers="0,1", dml_num_peers=3)
    with pytest.raises(ValueError, match="alpha_kd is 0"):
        dml_trainer(tmp_path, tokenizer, teacher=make_teacher(tokenizer), alpha_kd=0.0)
    with pytest.raises(ValueError, match="A peer predicts 3 labels"):
        dml_trainer(tmp_path, tokenizer, peers=[network(tokenizer, 2, num_labels=3)])
    with pytest.raises(ValueError, match="needs the source model"):
        dml_trainer(tmp_path, tokenizer, dml_peer_layers="0,1")


@pytest.mark.parametrize("with_teacher", [False, True])
def test_distill_glue_dml_saves_every_network(teacher_dir, glue_dir, tmp_path, with_teacher):
    from conftest import load_script

    distill_glue = load_script("distill_glue")
    out = tmp_path / "dml"
    source = ["--teacher_model_name_or_path", str(teacher_dir)] if with_teacher else ["--student_layers_from",
                                                                                      str(teacher_dir)]  # fmt: skip
    metrics = distill_glue.main([
        "--task_name", "rte", "--glue_dir", str(glue_dir), "--max_train_samples", "24", "--max_eval_samples", "16",
        "--max_seq_length", "32", "--per_device_train_batch_size", "4", "--max_steps", "3", "--logging_steps", "1",
        "--report_to", "none", "--disable_tqdm", "true", "--method", "dml", *source, "--student_layers", "0,1",
        "--dml_peer_layers", "2,3;1,3", "--output_dir", str(out),
    ])  # fmt: skip
    assert "eval_accuracy" in metrics
    logs = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert {"loss_dml_0", "loss_dml_2"} <= set(logs[0]) and (("loss_kd_1" in logs[0]) == with_teacher)
    # every network is a plain checkpoint: it loads in a process that never imports bertdistill
    script = (f"import sys; from transformers import AutoModelForSequenceClassification as A; "
              f"[A.from_pretrained(p) for p in {[str(out), str(out / 'peer_1'), str(out / 'peer_2')]!r}]; "
              "assert not any(m.startswith('bertdistill') for m in sys.modules)")  # fmt: skip
    assert subprocess.run([sys.executable, "-c", script], cwd=tmp_path).returncode == 0
    for name in ("peer_1", "peer_2"):
        folder = out / name
        peer = AutoModelForSequenceClassification.from_pretrained(folder)
        assert type(peer) is BertForSequenceClassification and peer.config.num_hidden_layers == 2
        assert "eval_accuracy" in json.loads((folder / "eval_results.json").read_text())
        assert "deep mutual learning" in (folder / "README.md").read_text()
    source = AutoModelForSequenceClassification.from_pretrained(teacher_dir)
    trained = AutoModelForSequenceClassification.from_pretrained(out / "peer_1")
    # peer 1 started from the source's layers 2 and 3: after 3 small steps its layers are still nearest to those
    for index, expected in ((0, 2), (1, 3)):
        weight = trained.bert.encoder.layer[index].attention.self.query.weight
        distances = [
            float((weight - layer.attention.self.query.weight).norm().detach()) for layer in source.bert.encoder.layer
        ]
        assert min(range(len(distances)), key=distances.__getitem__) == expected, distances
    assert build_student(source, layers="2,3").config.num_hidden_layers == trained.config.num_hidden_layers


# ---- ONE: branches of the top layers and their gated ensemble -------------------------------------------------------


def one_trainer(tmp_path, tokenizer, model=None, callbacks=None, num_labels=2, **config):
    from bertdistill import ONEConfig, ONETrainer

    defaults = dict(
        output_dir=str(tmp_path), per_device_train_batch_size=4, per_device_eval_batch_size=8, learning_rate=1e-3,
        max_steps=4, logging_steps=1, save_strategy="no", report_to=[], disable_tqdm=True, seed=3, use_cpu=True,
        bf16=False, train_sampling_strategy="random",
    )  # fmt: skip
    data = tiny_dataset(tokenizer, n=16, num_labels=num_labels)
    return ONETrainer(
        model=model if model is not None else network(tokenizer, 1, layers=3, num_labels=num_labels),
        args=ONEConfig(**{**defaults, **config}),
        train_dataset=data,
        eval_dataset=data,
        processing_class=tokenizer,
        callbacks=callbacks,
    )


@pytest.mark.parametrize("ensemble_weight", [None, 0.25])
def test_one_loss_matches_the_paper(tmp_path, tokenizer, ensemble_weight):
    """Sum of every branch's CE + the ensemble's CE + T^2 sum of KL(ensemble || branch), each branch computed here
    as the stock checkpoint it exports to; `one_ensemble_weight` weighs the ensemble's CE alone."""
    trainer = one_trainer(tmp_path, tokenizer, one_branches=3, one_shared_layers=2, temperature=2.0, alpha_kd=0.7,
                          one_ensemble_weight=ensemble_weight)  # fmt: skip
    wrapper = trainer.model.train()
    with torch.no_grad():  # branches that differ from the start (they begin as copies of the student's top)
        for k in (2, 3):
            for p in wrapper.extras[f"branch_{k}"].parameters():
                p.add_(0.05 * torch.randn_like(p))
    inputs = batch(tokenizer)
    loss, outputs = trainer.compute_loss(wrapper, dict(inputs), return_outputs=True)
    plain = {k: v for k, v in inputs.items() if k != "labels"}
    branches = [trainer.branch_model(k)(**plain).logits for k in (1, 2, 3)]
    shared = wrapper.student(**plain, output_hidden_states=True).hidden_states[2][:, 0]
    gate = torch.softmax(shared @ wrapper.extras["gate"].weight.T + wrapper.extras["gate"].bias, -1)
    ensemble = sum(gate[:, k : k + 1] * branches[k] for k in range(3))
    y = inputs["labels"]
    ce_sum = sum(ce(z, y) for z in branches)
    kd = sum(kl(ensemble.detach(), z, 2.0) for z in branches)
    torch.testing.assert_close(outputs.loss_components["ce"], ce_sum)
    torch.testing.assert_close(outputs.loss_components["ensemble_ce"], ce(ensemble, y))
    torch.testing.assert_close(outputs.loss_components["kd"], kd)
    weight = 1.0 if ensemble_weight is None else ensemble_weight
    torch.testing.assert_close(loss, ce_sum + weight * ce(ensemble, y) + 0.7 * kd)
    assert trainer.hyperparameters()["ensemble_weight"] == weight


def test_one_without_the_ensemble_ce_leaves_the_gate_untrained(tmp_path, tokenizer):
    trainer = one_trainer(tmp_path, tokenizer, one_ensemble_weight=0.0)
    before = state(trainer.model)
    trainer.train()
    after = state(trainer.model)
    assert all(torch.equal(after[k], before[k]) for k in after if k.startswith("extras.gate."))
    assert not torch.equal(after["extras.branch_2.classifier.weight"], before["extras.branch_2.classifier.weight"])


def test_one_trains_every_branch_and_the_gate_and_resumes(tmp_path, tokenizer):
    def make(folder, **config):
        return one_trainer(folder, tokenizer, model=network(tokenizer, 1, layers=3, dropout=0.1), max_steps=6,
                           save_strategy="steps", save_steps=3, **config)  # fmt: skip

    full = make(tmp_path / "full")
    before = state(full.model)
    full.train()
    moved = {".".join(k.split(".")[:2]) for k, v in state(full.model).items() if not torch.equal(v, before[k])}
    assert {"extras.branch_2", "extras.branch_3", "extras.gate", "student.bert"} <= moved
    logged = [row for row in full.state.log_history if "loss" in row]
    assert all({"loss_ce", "loss_ensemble_ce", "loss_kd"} <= set(row) for row in logged)
    exported = {name: full.extra_network(name) for name in full.extra_network_names()}
    assert set(exported) == {"branch_2", "branch_3"} and all(type(m) is BertForSequenceClassification
                                                             for m in exported.values())  # fmt: skip
    assert_resumes_like(full, make, tmp_path, 3)


@pytest.mark.parametrize("new_heads", [False, True])
def test_one_branches_copy_the_top_layers_and_copy_or_redraw_the_head(tmp_path, tokenizer, new_heads):
    torch.manual_seed(0)
    trainer = one_trainer(tmp_path, tokenizer, one_branches=3, one_new_heads=new_heads)
    student = trainer.student
    heads = [trainer.model.extras[f"branch_{k}"].classifier.weight for k in (2, 3)]
    for k in (2, 3):
        branch = trainer.model.extras[f"branch_{k}"]
        for ours, theirs in zip(branch.layers.parameters(), student.bert.encoder.layer[2:].parameters(), strict=True):
            assert torch.equal(ours, theirs)  # the pre-trained top layer is always a copy
        assert torch.equal(branch.pooler.dense.weight, student.bert.pooler.dense.weight)
    same = [torch.equal(head, student.classifier.weight) for head in heads]
    assert same == [not new_heads] * 2
    if new_heads:  # weights drawn afresh, each its own, at BERT's scale; the bias starts at the network's
        assert not torch.equal(heads[0], heads[1])
        std = student.config.initializer_range
        assert all(0.5 * std < float(head.std()) < 1.5 * std for head in heads)
        for k in (2, 3):
            assert torch.equal(trainer.model.extras[f"branch_{k}"].classifier.bias, student.classifier.bias)
    expected = "initialised afresh" if new_heads else "copies of the network's"
    assert trainer.hyperparameters()["branch_heads"] == expected


def test_one_regression_and_errors(tmp_path, tokenizer):
    from bertdistill import ONEConfig

    trainer = one_trainer(tmp_path, tokenizer, num_labels=1)
    trainer.train()
    assert all(torch.isfinite(torch.tensor(r["loss_kd"])) for r in trainer.state.log_history if "loss" in r)
    with pytest.raises(ValueError, match="at least 2 branches"):
        ONEConfig(str(tmp_path), one_branches=1)
    with pytest.raises(ValueError, match="one_ensemble_weight must be >= 0"):
        ONEConfig(str(tmp_path), one_ensemble_weight=-1.0)
    with pytest.raises(ValueError, match="leaves no layer to branch"):
        one_trainer(tmp_path, tokenizer, one_shared_layers=3)
    with pytest.raises(ValueError, match="trains without a teacher"):
        from bertdistill import ONETrainer

        ONETrainer(model=network(tokenizer, 1), teacher_model=network(tokenizer, 2), args=ONEConfig(str(tmp_path)))


def test_distill_glue_one_saves_every_branch(teacher_dir, glue_dir, tmp_path):
    from conftest import load_script

    distill_glue = load_script("distill_glue")
    out = tmp_path / "one"
    metrics = distill_glue.main([
        "--task_name", "rte", "--glue_dir", str(glue_dir), "--max_train_samples", "24", "--max_eval_samples", "16",
        "--max_seq_length", "32", "--per_device_train_batch_size", "4", "--max_steps", "3", "--logging_steps", "1",
        "--report_to", "none", "--disable_tqdm", "true", "--method", "one", "--student_layers_from", str(teacher_dir),
        "--student_num_layers", "3", "--one_branches", "2", "--output_dir", str(out),
    ])  # fmt: skip
    assert "eval_accuracy" in metrics
    branch = AutoModelForSequenceClassification.from_pretrained(out / "branch_2")
    assert type(branch) is BertForSequenceClassification and branch.config.num_hidden_layers == 3
    assert "eval_accuracy" in json.loads((out / "branch_2" / "eval_results.json").read_text())


# ---- knowledge grafting ---------------------------------------------------------------------------------------------


def test_weight_entropy_and_coefficient_follow_the_formula():
    from bertdistill.trainers.grafting_trainer import grafting_coefficient, weight_entropy

    values = torch.tensor([0.0, 0.1, 0.1, 0.2, 0.5, 0.9, 1.0, 1.0])
    # 4 equal bins over [0, 1]: [0, .25) holds 4, [.25, .5) 0, [.5, .75) 1, [.75, 1] 3
    p = torch.tensor([4, 1, 3]) / 8
    assert weight_entropy(values, bins=4) == pytest.approx(float(-(p * p.log()).sum()), rel=1e-6)
    assert weight_entropy(torch.ones(5)) == 0.0
    assert grafting_coefficient(1.0, 1.0, 0.4, 500) == 0.5
    assert grafting_coefficient(2.0, 1.0, 0.4, 500) == pytest.approx(
        0.5 + 0.4 / torch.pi * torch.atan(torch.tensor(500.0))
    )
    assert 0.3 < grafting_coefficient(0.0, 9.0, 0.4, 500) < 0.31


def test_a_grafting_round_mixes_each_tensor_by_its_coefficient(tokenizer):
    from bertdistill.trainers.grafting_trainer import graft, grafted_names, grafting_coefficient, weight_entropy

    nets = [network(tokenizer, seed) for seed in (1, 2, 3)]
    before = [{n: p.detach().clone() for n, p in net.named_parameters()} for net in nets]
    names = grafted_names(nets[0], "encoder_linear")
    assert names and all(".encoder.layer." in n and before[0][n].dim() == 2 for n in names)
    assert not any("embeddings" in n or "classifier" in n or "LayerNorm" in n for n in names)
    graft(nets, names, A=0.4, c=500, bins=10)
    for i, net in enumerate(nets):
        j = (i - 1) % 3
        after = dict(net.named_parameters())
        for name in names:
            own, other = before[i][name], before[j][name]
            a = grafting_coefficient(weight_entropy(own), weight_entropy(other), 0.4, 500)
            torch.testing.assert_close(after[name].detach(), a * own + (1 - a) * other)
        untouched = [n for n in before[i] if n not in names]
        assert all(torch.equal(after[n].detach(), before[i][n]) for n in untouched)


def grafting_trainer(tmp_path, tokenizer, student=None, peers=None, callbacks=None, **config):
    from bertdistill import GraftingConfig, GraftingTrainer

    defaults = dict(
        output_dir=str(tmp_path), per_device_train_batch_size=4, per_device_eval_batch_size=8, learning_rate=1e-3,
        max_steps=4, logging_steps=1, save_strategy="no", report_to=[], disable_tqdm=True, seed=3, use_cpu=True,
        bf16=False, train_sampling_strategy="random",
    )  # fmt: skip
    data = tiny_dataset(tokenizer, n=16)
    return GraftingTrainer(
        model=student if student is not None else network(tokenizer, 1),
        args=GraftingConfig(**{**defaults, **config}),
        peers=peers,
        train_dataset=data,
        eval_dataset=data,
        processing_class=tokenizer,
        callbacks=callbacks,
    )


def test_grafting_trainer_grafts_at_its_interval(tmp_path, tokenizer):
    """With learning rate 0 only grafting changes the weights: after 2 rounds (every 2 of 4 steps) they are what 2
    rounds of the formula give from the start."""
    from bertdistill.trainers.grafting_trainer import graft, grafted_names

    nets = [network(tokenizer, 1), network(tokenizer, 2)]
    expected = [network(tokenizer, 1), network(tokenizer, 2)]
    names = grafted_names(expected[0], "encoder_linear")
    for _ in range(2):
        graft(expected, names, 0.4, 500, 10)
    trainer = grafting_trainer(tmp_path, tokenizer, student=nets[0], peers=nets[1:], learning_rate=0.0,
                               graft_every_steps=2)  # fmt: skip
    trainer.train()
    assert [entry["step"] for entry in trainer.graft_log] == [2, 4]
    assert any("graft_coefficient" in row for row in trainer.state.log_history)
    for net, reference in zip(trainer.networks(), expected):
        for name, value in reference.named_parameters():
            torch.testing.assert_close(dict(net.named_parameters())[name].detach(), value.detach())


def test_grafting_trains_every_network_per_epoch_and_resumes(tmp_path, tokenizer):
    def make(folder, **config):
        return grafting_trainer(folder, tokenizer, student=network(tokenizer, 1, dropout=0.1), max_steps=8,
                                save_strategy="steps", save_steps=4, num_train_epochs=2, **config)  # fmt: skip

    full = make(tmp_path / "full")
    before = state(full.model)
    full.train()
    assert [entry["step"] for entry in full.graft_log] == [4, 8]  # 16 rows / 4 = 4 steps an epoch
    moved = {".".join(k.split(".")[:2]) for k, v in state(full.model).items() if not torch.equal(v, before[k])}
    assert {"extras.peer_1", "student.bert", "student.classifier"} <= moved
    assert_resumes_like(full, make, tmp_path, 4)


def test_grafting_errors(tmp_path, tokenizer):
    from bertdistill import GraftingConfig

    with pytest.raises(ValueError, match="at least 2 networks"):
        GraftingConfig(str(tmp_path), graft_networks=1)
    with pytest.raises(ValueError, match="needs 2 other networks, 1 are given"):
        GraftingConfig(str(tmp_path), graft_networks=3, graft_peer_layers="0,1")
    with pytest.raises(ValueError, match="graft_A must be in"):
        GraftingConfig(str(tmp_path), graft_A=2.0)
    with pytest.raises(ValueError, match="graft_tensors must be one of"):
        GraftingConfig(str(tmp_path), graft_tensors="some")
    with pytest.raises(ValueError, match="every network needs the student's shapes"):
        grafting_trainer(tmp_path, tokenizer, peers=[network(tokenizer, 2, layers=3)])


def test_distill_glue_grafting_from_other_source_layers(teacher_dir, glue_dir, tmp_path):
    from conftest import load_script

    distill_glue = load_script("distill_glue")
    out = tmp_path / "graft"
    metrics = distill_glue.main([
        "--task_name", "rte", "--glue_dir", str(glue_dir), "--max_train_samples", "24", "--max_eval_samples", "16",
        "--max_seq_length", "32", "--per_device_train_batch_size", "4", "--max_steps", "4", "--logging_steps", "1",
        "--report_to", "none", "--disable_tqdm", "true", "--method", "grafting", "--student_layers_from",
        str(teacher_dir), "--student_layers", "1,3", "--graft_peer_layers", "0,2", "--graft_every_steps", "2",
        "--output_dir", str(out),
    ])  # fmt: skip
    assert "eval_accuracy" in metrics
    logs = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert sum("graft_coefficient" in row for row in logs) == 2
    assert type(AutoModelForSequenceClassification.from_pretrained(out)) is BertForSequenceClassification
    assert not (out / "peer_1").exists()  # the result is one checkpoint
