"""Teacher-free schemes: CS-KD's class-wise pairs (the sampler), its loss against the paper's formula, the trainer
(no teacher run or accepted, the partners' side without gradient, batch x accumulation invariance, resume) and the
CLI without a teacher."""

import functools
import json
from collections import Counter

import pytest
import torch
from transformers import BertForSequenceClassification

from bertdistill import CSKDConfig, CSKDTrainer
from bertdistill.samplers import ClassPairSampler

from conftest import tiny_config
from test_trainer import (
    SENTENCES,
    assert_batch_accumulation_invariance,
    assert_resumes_like,
    state,
    tiny_dataset,
)

LABELS = [0, 1, 0, 2, 1, 0, 0, 1, 2, 0, 1]


def chunks(order, batch_size):
    return [order[i : i + 2 * batch_size] for i in range(0, len(order), 2 * batch_size)]


@pytest.mark.parametrize("partner", ["other", "any"])
def test_pair_sampler_pairs_same_class_rows(partner):
    sampler = ClassPairSampler(LABELS, batch_size=4, seed=5, partner=partner)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        order = list(sampler)
        assert len(order) == len(sampler) == 2 * 4 * 3  # 11 anchors -> 3 whole chunks of 4
        anchors = []
        for chunk in chunks(order, 4):
            assert len(chunk) == 8
            head, tail = chunk[:4], chunk[4:]
            assert [LABELS[i] for i in head] == [LABELS[i] for i in tail]
            if partner == "other":
                assert all(a != p for a, p in zip(head, tail))
            anchors += head
        # every row is an anchor once; the last chunk is completed with the epoch's first anchors
        assert Counter(anchors[: len(LABELS)]) == Counter(range(len(LABELS)))
        assert anchors[len(LABELS) :] == anchors[: len(anchors) - len(LABELS)]


def test_pair_sampler_draws_partners_uniformly_and_reproducibly():
    labels = [0] * 4 + [1] * 2
    sampler = ClassPairSampler(labels, batch_size=6, seed=0, partner="other")
    counts = Counter()
    for epoch in range(400):
        sampler.set_epoch(epoch)
        order = list(sampler)
        counts.update((a, p) for a, p in zip(order[:6], order[6:]) if a == 0)
    # row 0's partners are rows 1, 2 and 3, a third each (400 draws: within about 4 standard deviations)
    assert set(counts) == {(0, 1), (0, 2), (0, 3)}
    assert all(abs(n / 400 - 1 / 3) < 0.1 for n in counts.values()), counts
    sampler.set_epoch(7)
    first = list(sampler)
    assert list(sampler) == first and list(ClassPairSampler(labels, 6, seed=1)) != first
    # the authors' sampler draws over the whole class, the anchor included
    own = ClassPairSampler(labels, batch_size=6, seed=0, partner="any")
    paired_with_itself = 0
    for epoch in range(50):
        own.set_epoch(epoch)
        order = list(own)
        paired_with_itself += sum(a == p for a, p in zip(order[:6], order[6:]))
    assert paired_with_itself > 0
    # fewer rows than a batch: the chunk is still whole
    tiny = list(ClassPairSampler([0, 1], batch_size=5, seed=0))
    assert len(tiny) == len(ClassPairSampler([0, 1], batch_size=5)) == 10
    assert all([0, 1][a] == [0, 1][p] for a, p in zip(tiny[:5], tiny[5:]))
    # a class of one row can only pair with itself
    order = list(ClassPairSampler([0, 1, 1], 3, partner="other"))
    assert dict(zip(order[:3], order[3:])) == {0: 0, 1: 2, 2: 1}


def test_pair_sampler_errors():
    with pytest.raises(ValueError, match="partner must be one of"):
        ClassPairSampler(LABELS, 4, partner="self")
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        ClassPairSampler(LABELS, 0)


def network(tokenizer, dropout=0.0, num_labels=2, seed=2):
    torch.manual_seed(seed)
    config = tiny_config(len(tokenizer), num_labels=num_labels, layers=2, dropout=dropout)
    if num_labels == 1:
        config.problem_type = "regression"
    return BertForSequenceClassification(config)


def cskd_trainer(tmp_path, tokenizer, model=None, n=16, callbacks=None, **config):
    defaults = dict(
        output_dir=str(tmp_path), per_device_train_batch_size=4, per_device_eval_batch_size=8, learning_rate=1e-3,
        max_steps=4, logging_steps=1, save_strategy="no", report_to=[], disable_tqdm=True, seed=3, use_cpu=True,
        bf16=False,
    )  # fmt: skip
    data = tiny_dataset(tokenizer, n=n)
    return CSKDTrainer(
        model=model if model is not None else network(tokenizer),
        args=CSKDConfig(**{**defaults, **config}),
        train_dataset=data,
        eval_dataset=data,
        processing_class=tokenizer,
        callbacks=callbacks,
    )


def reference_cskd_loss(anchor_logits, partner_logits, labels, temperature, lam):
    """The paper's loss (Yun et al. 2020, eq. 3): CE on the anchors + lambda * T^2 * KL(P(x'; T) || P(x; T)), the
    KL summed over classes and averaged over the anchors, written out element by element."""
    b, c = anchor_logits.shape
    ce = 0.0
    kl = 0.0
    for i in range(b):
        log_z = torch.logsumexp(anchor_logits[i], 0)
        ce = ce - (anchor_logits[i, labels[i]] - log_z)
        p = torch.softmax(anchor_logits[i] / temperature, 0)
        q = torch.softmax(partner_logits[i] / temperature, 0)
        kl = kl + sum(q[k] * (torch.log(q[k]) - torch.log(p[k])) for k in range(c))
    return ce / b, temperature**2 * kl / b, ce / b + lam * temperature**2 * kl / b


def test_cskd_loss_matches_the_paper_and_partners_get_no_gradient(tmp_path, tokenizer):
    trainer = cskd_trainer(tmp_path, tokenizer, temperature=3.0, alpha_kd=2.0)
    model = trainer.model
    model.train()
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["input_ids"].shape[0] == 8  # 4 anchors + 4 partners
    assert torch.equal(batch["labels"][:4], batch["labels"][4:])
    loss, outputs = trainer.compute_loss(model, dict(batch), return_outputs=True)
    loss.backward()
    got = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()

    inputs = {k: v for k, v in batch.items() if k != "labels"}
    logits = model.student(**{k: v[:4] for k, v in inputs.items()}).logits
    with torch.no_grad():
        partner = model.student(**{k: v[4:] for k, v in inputs.items()}).logits
    ce, cls, total = reference_cskd_loss(logits, partner, batch["labels"][:4], 3.0, 2.0)
    torch.testing.assert_close(outputs.loss_components["ce"], ce)
    torch.testing.assert_close(outputs.loss_components["cls"], cls)
    torch.testing.assert_close(loss, total)
    total.backward()  # the partners' logits are constants here: gradients through them would differ
    for name, grad in got.items():
        torch.testing.assert_close(grad, dict(model.named_parameters())[name].grad, rtol=1e-4, atol=1e-6)


def test_cskd_trains_without_a_teacher(tmp_path, tokenizer):
    trainer = cskd_trainer(tmp_path, tokenizer, model=network(tokenizer, dropout=0.1))
    assert trainer.teacher is None
    before = state(trainer.student)
    trainer.train()
    logged = [row for row in trainer.state.log_history if "loss" in row]
    assert all({"loss_ce", "loss_cls"} <= set(row) and "loss_kd" not in row for row in logged)
    assert any(not torch.equal(v, before[k]) for k, v in state(trainer.student).items())
    assert trainer.speed_levers["train_sampling_strategy"].value == "class_pairs"
    assert not trainer.speed_levers["cache_teacher_logits"].value
    metrics = trainer.evaluate()
    assert "eval_loss" in metrics
    trainer.save_model()
    trainer.create_model_card(task_name="rte", metrics={"eval_accuracy": 0.5})
    card = (tmp_path / "README.md").read_text()
    assert "CS-KD" in card and "lambda_cls" in card and "| teacher `" not in card and "starting from ``" not in card


def test_cskd_batch_times_accumulation_invariance(tmp_path, tokenizer):
    """4 anchors x 1 step and 2 anchors x 2 accumulated steps see the same anchors and partners (the sampler draws
    them in anchor order) and must make the same SGD update."""
    assert_batch_accumulation_invariance(functools.partial(cskd_trainer, tokenizer=tokenizer), tmp_path)


def test_cskd_resumes_to_the_same_weights(tmp_path, tokenizer):
    def make(folder, **config):
        return cskd_trainer(folder, tokenizer, model=network(tokenizer, dropout=0.1), max_steps=6,
                            save_strategy="steps", save_steps=3, **config)  # fmt: skip

    full = make(tmp_path / "full")
    full.train()
    assert_resumes_like(full, make, tmp_path, 3, part=lambda t: t.student)


def test_cskd_errors(tmp_path, tokenizer):
    with pytest.raises(ValueError, match="trains without a teacher"):
        CSKDTrainer(model=network(tokenizer), teacher_model=network(tokenizer), args=CSKDConfig(str(tmp_path)))
    with pytest.raises(ValueError, match="needs a classification task"):
        cskd_trainer(tmp_path, tokenizer, model=network(tokenizer, num_labels=1))
    with pytest.raises(ValueError, match="cskd_partner must be one of"):
        CSKDConfig(str(tmp_path), cskd_partner="self")
    with pytest.raises(ValueError, match="same-class pairs replace the training sampler"):
        cskd_trainer(tmp_path, tokenizer, train_sampling_strategy="group_by_length")


def test_distill_glue_cskd_without_a_teacher(teacher_dir, glue_dir, tmp_path):
    """`--method cskd` takes the network from --student_layers_from and refuses a teacher it would ignore."""
    from conftest import load_script

    distill_glue = load_script("distill_glue")
    out = tmp_path / "cskd"
    common = ["--task_name", "rte", "--glue_dir", str(glue_dir), "--max_train_samples", "24", "--max_eval_samples",
              "16", "--max_seq_length", "32", "--per_device_train_batch_size", "4", "--max_steps", "3",
              "--logging_steps", "1", "--report_to", "none", "--disable_tqdm", "true", "--method", "cskd"]  # fmt: skip
    metrics = distill_glue.main([*common, "--student_layers_from", str(teacher_dir), "--student_num_layers", "2",
                                 "--output_dir", str(out)])  # fmt: skip
    assert "eval_accuracy" in metrics
    logs = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert "loss_cls" in logs[0]
    assert BertForSequenceClassification.from_pretrained(out).config.num_hidden_layers == 2
    with pytest.raises(ValueError, match="trains without a teacher and would ignore"):
        distill_glue.main([*common, "--teacher_model_name_or_path", str(teacher_dir), "--student_layers_from",
                           str(teacher_dir), "--output_dir", str(tmp_path / "t")])  # fmt: skip
    with pytest.raises(ValueError, match="exactly one of --student_layers_from"):
        distill_glue.main([*common, "--output_dir", str(tmp_path / "none")])
    with pytest.raises(ValueError, match="distills from a teacher"):
        distill_glue.main([*common[:-1], "kd", "--student_num_layers", "2", "--output_dir", str(tmp_path / "kd")])
    # the no-teacher baseline needs no teacher either
    baseline = distill_glue.main([*common[:-1], "finetune", "--student_layers_from", str(teacher_dir),
                                  "--student_num_layers", "2", "--output_dir", str(tmp_path / "ft")])  # fmt: skip
    assert "eval_accuracy" in baseline


# ---- DDGSD: distortions and the two-view loss ----------------------------------------------------------------------


def padded_batch(tokenizer, texts=None):
    texts = texts or ["the movie was good", "a bad bad film of it", "it is", "not good and not bad at all"]
    encoded = tokenizer(texts, [t[::-1] for t in texts], padding=True, return_tensors="pt")
    return {k: encoded[k] for k in ("input_ids", "attention_mask", "token_type_ids")}


@pytest.mark.parametrize("mode", ["mask", "drop", "substitute", "mixed"])
def test_distortions_leave_special_tokens_and_padding_alone(tokenizer, mode):
    from bertdistill.distortion import distort

    inputs = padded_batch(tokenizer, SENTENCES)
    special = tokenizer.all_special_ids
    out = distort(**inputs, special_ids=special, vocab_size=len(tokenizer), mode=mode, rate=0.5,
                  mask_token_id=tokenizer.mask_token_id, pad_token_id=tokenizer.pad_token_id,
                  generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert out["input_ids"].shape == inputs["input_ids"].shape
    changed = 0
    for row in range(len(SENTENCES)):
        before = inputs["input_ids"][row][inputs["attention_mask"][row].bool()].tolist()
        after = out["input_ids"][row][out["attention_mask"][row].bool()].tolist()
        # the special tokens are all still there, in order (the mask tokens are the distortion's)
        kept = [t for t in special if t != tokenizer.mask_token_id]
        assert [t for t in before if t in kept] == [t for t in after if t in kept]
        if mode == "drop":  # the kept tokens, in their order
            assert len(after) <= len(before) and all(t in before for t in after)
        elif mode == "mixed":  # some dropped, some replaced
            assert len(after) <= len(before)
        else:  # same length, only real tokens replaced
            assert len(after) == len(before)
            for b, a in zip(before, after):
                assert b == a or (b not in special and (a == tokenizer.mask_token_id or a not in special))
        changed += before != after
        assert not out["attention_mask"][row][len(after) :].any()
    assert changed >= len(SENTENCES) // 2
    same = distort(**inputs, special_ids=special, vocab_size=len(tokenizer), mode=mode, rate=0.0,
                   mask_token_id=tokenizer.mask_token_id)  # fmt: skip
    assert all(torch.equal(same[k], inputs[k]) for k in inputs)


def test_distortion_rate_and_errors(tokenizer):
    from bertdistill.distortion import distort

    inputs = padded_batch(tokenizer, SENTENCES * 8)
    out = distort(**inputs, special_ids=tokenizer.all_special_ids, vocab_size=len(tokenizer), mode="mask", rate=0.3,
                  mask_token_id=tokenizer.mask_token_id, generator=torch.Generator().manual_seed(1))  # fmt: skip
    real = inputs["attention_mask"].bool() & ~torch.isin(inputs["input_ids"], torch.tensor(tokenizer.all_special_ids))
    share = float((out["input_ids"][real] == tokenizer.mask_token_id).float().mean())
    assert abs(share - 0.3) < 0.06, share
    with pytest.raises(ValueError, match="rate must be in"):
        distort(**inputs, special_ids=[], vocab_size=10, mode="drop", rate=1.0)
    with pytest.raises(ValueError, match="distortion must be one of"):
        distort(**inputs, special_ids=[], vocab_size=10, mode="shuffle", rate=0.1)
    with pytest.raises(ValueError, match="needs the tokenizer's mask token"):
        distort(**inputs, special_ids=[], vocab_size=10, mode="mask", rate=0.1)


def ddgsd_trainer(tmp_path, tokenizer, model=None, **config):
    from bertdistill import DDGSDConfig, DDGSDTrainer

    defaults = dict(
        output_dir=str(tmp_path), per_device_train_batch_size=4, per_device_eval_batch_size=8, learning_rate=1e-3,
        max_steps=4, logging_steps=1, save_strategy="no", report_to=[], disable_tqdm=True, seed=3, use_cpu=True,
        bf16=False, train_sampling_strategy="random",
    )  # fmt: skip
    data = tiny_dataset(tokenizer, n=16)
    return DDGSDTrainer(model=model if model is not None else network(tokenizer), args=DDGSDConfig(**{**defaults,
                        **config}), train_dataset=data, eval_dataset=data, processing_class=tokenizer)  # fmt: skip


def test_ddgsd_loss_matches_its_formula(tmp_path, tokenizer):
    trainer = ddgsd_trainer(tmp_path, tokenizer, ddgsd_rate=0.3, temperature=2.0, alpha_kd=0.5, ddgsd_mmd_weight=3.0)
    model = trainer.model.train()
    inputs = {**padded_batch(tokenizer), "labels": torch.tensor([1, 0, 1, 0])}
    torch.manual_seed(11)
    loss, outputs = trainer.compute_loss(model, dict(inputs), return_outputs=True)
    torch.manual_seed(11)
    views = trainer.two_views(dict(inputs))
    assert not torch.equal(views["input_ids"][:4], views["input_ids"][4:])  # two different distortions
    out = model.student(**{k: v for k, v in views.items() if k != "labels"}, output_hidden_states=True)
    z1, z2 = out.logits[:4], out.logits[4:]
    y = inputs["labels"]
    ce = sum(-(z[i, y[i]] - torch.logsumexp(z[i], 0)) for z in (z1, z2) for i in range(4)) / 4

    def kl(target, z):
        q, log_p = torch.softmax(target / 2.0, -1), torch.log_softmax(z / 2.0, -1)
        return 4.0 * (q * (q.log() - log_p)).sum(-1).mean()

    f1, f2 = out.hidden_states[-1][:4, 0], out.hidden_states[-1][4:, 0]
    mmd = sum((f1[:, h].mean() - f2[:, h].mean()) ** 2 for h in range(f1.shape[1]))
    torch.testing.assert_close(outputs.loss_components["ce"], ce)
    torch.testing.assert_close(outputs.loss_components["views"], kl(z2, z1) + kl(z1, z2))
    torch.testing.assert_close(outputs.loss_components["mmd"], mmd)
    torch.testing.assert_close(loss, ce + 0.5 * (kl(z2, z1) + kl(z1, z2)) + 3.0 * mmd)


def test_ddgsd_detach_targets_decides_where_the_view_terms_send_gradients(tmp_path, tokenizer):
    """The views term has the same value either way; with detached targets each KL direction trains only its
    student side, without, both sides: the gradients differ."""
    grads, values = [], []
    for detach in (True, False):
        trainer = ddgsd_trainer(tmp_path / str(detach), tokenizer, ddgsd_rate=0.3, ddgsd_detach_targets=detach)
        model = trainer.model.train()
        with torch.no_grad():  # predictions far from uniform, so that the views disagree visibly
            model.student.classifier.weight.mul_(50)
        torch.manual_seed(5)
        _, outputs = trainer.compute_loss(model, {**padded_batch(tokenizer), "labels": torch.tensor([1, 0, 1, 0])},
                                          return_outputs=True)  # fmt: skip
        weight = model.student.classifier.weight
        grads.append(torch.autograd.grad(outputs.loss_components["views"], weight)[0])
        values.append(outputs.loss_components["views"].detach())
    torch.testing.assert_close(values[0], values[1])
    assert (grads[0] - grads[1]).abs().max() > 0.1 * grads[0].abs().max()


def test_ddgsd_trains_and_refuses_what_it_cannot_use(tmp_path, tokenizer):
    from bertdistill import DDGSDConfig, DDGSDTrainer

    trainer = ddgsd_trainer(tmp_path, tokenizer, ddgsd_distortion="mixed")
    before = state(trainer.student)
    trainer.train()
    logged = [row for row in trainer.state.log_history if "loss" in row]
    assert all({"loss_ce", "loss_views", "loss_mmd"} <= set(row) for row in logged)
    assert any(not torch.equal(v, before[k]) for k, v in state(trainer.student).items())
    with pytest.raises(ValueError, match="needs the tokenizer"):
        DDGSDTrainer(model=network(tokenizer), args=DDGSDConfig(str(tmp_path)), train_dataset=tiny_dataset(tokenizer))
    with pytest.raises(ValueError, match="ddgsd_rate must be in"):
        DDGSDConfig(str(tmp_path), ddgsd_rate=1.0)
    with pytest.raises(ValueError, match="ddgsd_distortion must be one of"):
        DDGSDConfig(str(tmp_path), ddgsd_distortion="shuffle")


def test_ddgsd_without_distortion_is_batch_times_accumulation_invariant(tmp_path, tokenizer):
    """At rate 0 both views are the input, so 4 x 1 and 2 x 2 see the same rows and must make the same update."""
    results = []
    for size, accumulation in ((4, 1), (2, 2)):
        trainer = ddgsd_trainer(
            tmp_path / f"{size}x{accumulation}", tokenizer, ddgsd_rate=0.0, per_device_train_batch_size=size,
            gradient_accumulation_steps=accumulation, max_steps=1, optim="sgd", learning_rate=0.5, max_grad_norm=0.0,
            lr_scheduler_type="constant",
        )  # fmt: skip
        before = state(trainer.student)
        trainer.train()
        results.append({k: v - before[k] for k, v in state(trainer.student).items()})
    assert any(v.abs().max() > 1e-4 for v in results[0].values())
    for key in results[0]:
        torch.testing.assert_close(results[0][key], results[1][key], rtol=1e-4, atol=1e-6)


def test_distill_glue_ddgsd_without_a_teacher(teacher_dir, glue_dir, tmp_path):
    from conftest import load_script

    distill_glue = load_script("distill_glue")
    out = tmp_path / "ddgsd"
    metrics = distill_glue.main([
        "--task_name", "rte", "--glue_dir", str(glue_dir), "--max_train_samples", "24", "--max_eval_samples", "16",
        "--max_seq_length", "32", "--per_device_train_batch_size", "4", "--max_steps", "3", "--logging_steps", "1",
        "--report_to", "none", "--disable_tqdm", "true", "--method", "ddgsd", "--student_layers_from",
        str(teacher_dir), "--student_num_layers", "2", "--ddgsd_distortion", "drop", "--output_dir", str(out),
    ])  # fmt: skip
    assert "eval_accuracy" in metrics
    logs = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert {"loss_ce", "loss_views", "loss_mmd"} <= set(logs[0])
    assert "drop at 0.1" in (out / "README.md").read_text()


def test_self_distillation_check_commands_and_report(tmp_path, glue_dir, monkeypatch):
    """check_self_distillation.py: which command each run issues (teacher only where the method takes one, the
    fixed-depth networks on BYOT's first layers), and the report built from result files: intervals against
    finetune (and kd for DML and ONE), the other networks' scores, BYOT's early-exit table and plot, and the runs
    still missing (CS-KD never on STS-B)."""
    from bertdistill.results import ResultStore
    from glue_tasks import get_task, load_glue_split

    from conftest import load_script

    check = load_script("checks/check_self_distillation")
    check.compare_feature_losses.BOOTSTRAP_RESAMPLES = 200  # the intervals here are far from 0
    args, _ = check.parse(["--glue_dir", str(glue_dir), "--base_model", str(tmp_path / "encoder")])
    mrpc, stsb = get_task("mrpc"), get_task("stsb")
    commands = {
        run: check.run_command(mrpc, run, "1", args, tmp_path / "teacher", tmp_path / run) for run in check.RUNS
    }
    for run, command in commands.items():
        assert ("--teacher_model_name_or_path" in command) == (run in check.TEACHER_RUNS), run
        assert command[command.index("--student_layers_from") + 1] == str(tmp_path / "encoder")
    layers = {run: command[command.index("--student_layers") + 1] for run, command in commands.items()}
    assert layers["byot"] == "1,3,5" and layers["finetune-1l"] == "1" and layers["finetune-2l"] == "1,3"
    assert not check.applies(stsb, "cskd") and check.applies(stsb, "byot") and check.applies(mrpc, "cskd")
    assert check.applies(mrpc, "one-ce-only") and not check.applies(stsb, "one-ce-only")  # MRPC's diagnostic
    assert "--one_new_heads" in commands["one-new-heads"] and "--alpha_kd" in commands["one-ce-only"]
    assert check.applies(mrpc, "one-no-ensemble-ce") and not check.applies(stsb, "one-no-ensemble-ce")
    assert commands["one-no-ensemble-ce"][-2:] == ["--one_ensemble_weight", "0"]
    assert check.applies(mrpc, "grafting-same-layers") and not check.applies(mrpc, "ddgsd-no-distortion")
    assert commands["grafting-same-layers"][-2:] == ["--graft_peer_layers", "1,3,5"]
    # the regression head start: the default adds nothing (the recorded commands), zero is passed on
    assert not any("--regression_head_init" in command for command in commands.values())
    zero, _ = check.parse(["--glue_dir", str(glue_dir), "--base_model", "enc", "--regression_head_init", "zero"])
    assert check.run_command(stsb, "byot", "1", zero, None, tmp_path)[-2:] == ["--regression_head_init", "zero"]
    # the teacher is asked for only by a pending run that reads it
    trained, asked = [], []
    monkeypatch.setattr(check, "record_run", lambda task, run, *a, **k: trained.append(run))
    (tmp_path / "teacher").mkdir()
    (tmp_path / "teacher" / "eval_results.json").write_text(json.dumps({"eval_f1": 0.85}))
    teacher_of = lambda: asked.append(1) or tmp_path / "teacher"  # noqa: E731
    pending = ResultStore(tmp_path / "pending")
    pending.save("mrpc", "kd", "1", {"score": 0.8})
    for run in ("kd", "byot", "one-ce-only"):
        check.train(mrpc, run, "1", args, teacher_of, pending)
    check.train(stsb, "one-ce-only", "1", args, teacher_of, pending)  # not on STS-B
    assert trained == ["byot", "one-ce-only"] and asked == []
    check.train(mrpc, "finetune", "1", args, teacher_of, pending)
    assert trained[-1] == "finetune" and asked == [1]
    monkeypatch.undo()

    labels = list(load_glue_split("mrpc", "validation", glue_dir)["label"])
    flipped = [1 - y for y in labels]
    store = ResultStore(tmp_path / "results")

    def record(predictions, **extra):
        return {"metric": "f1", "score": 0.5, "dev_predictions": predictions, "wall_time_s": 1, "machine": "test",
                **extra}  # fmt: skip

    sweep = [{"setting": "entropy 0", "kind": "early_exit", "threshold": 0.0, "score": 0.8, "mean_layers": 3.0,
              "latency_b1_ms": 3.0},
             {"setting": "exit 1 (fixed depth)", "kind": "fixed_depth", "threshold": None, "score": 0.7,
              "mean_layers": 1.0, "latency_b1_ms": 1.0}]  # fmt: skip
    extra_threshold = {"setting": "entropy 0.9", "kind": "early_exit", "threshold": 0.9, "score": 0.75,
                       "mean_layers": 2.0, "latency_b1_ms": 2.0}  # fmt: skip
    for seed in ("1", "2"):
        store.save("mrpc", "finetune", seed, record(flipped))
        store.save("mrpc", "kd", seed, record(labels[:200] + flipped[200:], teacher_score=0.85))
        store.save("mrpc", "dml", seed, record(labels, peer_1_score=0.6))
        store.save("mrpc", "finetune-1l", seed, record(labels))
        # seed 2's sweep has a threshold seed 1's lacks: rows are matched by setting, not position
        byot_sweep = sweep + [extra_threshold] if seed == "2" else sweep
        store.save("mrpc", "byot", seed, record(labels[:100] + flipped[100:], early_exit=byot_sweep))
    report = tmp_path / "report.md"
    summaries = check.main(["--tasks", "mrpc", "stsb", "--seeds", "1", "2", "--glue_dir", str(glue_dir),
                            "--results_dir", str(tmp_path / "results"), "--report", str(report),
                            "--report_only"])  # fmt: skip
    rows = {row["run"]: row for row in summaries[0]["rows"]}
    assert rows["dml"]["vs_finetune"]["low"] > 0 and rows["dml"]["vs_kd"]["low"] > 0
    assert rows["byot"]["vs_kd"] is None and rows["dml"]["other_networks"] == {"peer_1_score": 0.6}
    text = report.read_text()
    assert "| dml | 1,2 |" in text and "peer_1 0.6000" in text and "teacher 0.8500" in text
    assert "| entropy 0 | 2 | 0.8000 | 3.00 | 3.00 |" in text and "| entropy 0.9 | 1 | 0.7500 | 2.00 | 2.00 |" in text
    # the 1-layer network trained alone sits next to BYOT's exit 1, with that exit's latency; the 3-layer one has no
    # exit-3 row in this sweep to take its latency from
    assert "| finetune-1l (trained alone) | 2 | 1.0000 | 1.00 | 1.00 |" in text
    assert "finetune (trained alone)" not in text
    assert (tmp_path / "self_distillation_mrpc_early_exit.png").is_file()
    assert "![every run against finetune" in text and report.with_suffix(".png").stat().st_size > 1000
    stsb_runs = len([r for r in check.RUNS if check.applies(stsb, r)])
    assert f"- stsb: {2 * stsb_runs} of {2 * stsb_runs} runs (seeds 1, 2)" in text
    mrpc_runs = len([r for r in check.RUNS if check.applies(mrpc, r)])
    assert f"- mrpc: {2 * (mrpc_runs - 5)} of {2 * mrpc_runs} runs" in text
