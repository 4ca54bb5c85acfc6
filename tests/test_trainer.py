import functools
import json
import subprocess
import sys
from types import SimpleNamespace

import datasets
import numpy as np
import pytest
import torch
from huggingface_hub import HfApi
from transformers import TrainerCallback

from bertdistill import DistillationTrainingConfig, build_student, get_method
from bertdistill.glue_run import compute_metrics_for
from glue_tasks import get_task

from conftest import make_teacher

SENTENCES = [
    "the movie was good",
    "the film is bad",
    "a good film",
    "not a good movie",
    "it was bad and not good",
    "the film was good and the movie is good",
    "bad",
    "good good good",
    "a bad bad movie",
    "it is not bad",
    "to the movie",
    "in the film it was",
    "of the good",
    "and it is",
    "was it good",
    "the bad film of it",
]


def tiny_dataset(tokenizer, n=16, num_labels=2, seed=0):
    rng = np.random.default_rng(seed)
    texts = [SENTENCES[i % len(SENTENCES)] for i in range(n)]
    labels = rng.normal(size=n).tolist() if num_labels == 1 else rng.integers(0, num_labels, size=n).tolist()
    encoded = tokenizer(texts, truncation=True, max_length=32)
    return datasets.Dataset.from_dict({**encoded, "label": labels})


def make_trainer(
    tmp_path,
    tokenizer,
    teacher=None,
    student=None,
    num_labels=2,
    dropout=0.1,
    n=16,
    callbacks=None,
    method="kd",
    **config,
):
    teacher = teacher if teacher is not None else make_teacher(tokenizer, num_labels=num_labels, dropout=dropout)
    torch.manual_seed(1)
    student = student if student is not None else build_student(teacher, num_layers=2)
    defaults = dict(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        per_device_eval_batch_size=8,
        learning_rate=1e-3,
        max_steps=4,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        seed=3,
        use_cpu=True,
        # The speed levers, explicit: these tests pin exact numbers and batch orders (tests of the levers' own
        # defaults build their configs without these).
        train_sampling_strategy="random",
        bf16=False,
        cache_teacher_logits=False,
        cache_teacher_outputs=False,
    )
    method = get_method(method)
    args = method.config_class(**{**defaults, **config})
    data = tiny_dataset(tokenizer, n=n, num_labels=num_labels)
    return method.trainer_class(
        model=student,
        teacher_model=teacher,
        args=args,
        train_dataset=data,
        eval_dataset=data,
        processing_class=tokenizer,
        compute_metrics=compute_metrics_for(get_task("rte")),
        callbacks=callbacks,
    )


def state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_loss_components_logged_student_trains_teacher_frozen(tmp_path, tokenizer):
    trainer = make_trainer(tmp_path, tokenizer, alpha_ce=0.3, alpha_kd=0.7)
    teacher_before, student_before = state(trainer.teacher), state(trainer.student)
    trainer.train()
    logs = [log for log in trainer.state.log_history if "loss" in log]
    assert len(logs) == 4
    for log in logs:
        assert log["loss"] == pytest.approx(0.3 * log["loss_ce"] + 0.7 * log["loss_kd"], abs=2e-4)
        assert log["loss_kd"] > 0
    assert all(torch.equal(v, state(trainer.teacher)[k]) for k, v in teacher_before.items())
    assert not trainer.teacher.training
    changed = [k for k, v in state(trainer.student).items() if not torch.equal(v, student_before[k])]
    assert any("encoder.layer" in k for k in changed) and any("classifier" in k for k in changed)
    optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert not optimised & {id(p) for p in trainer.teacher.parameters()}


def test_regression_uses_mse_on_outputs(tmp_path, tokenizer):
    trainer = make_trainer(tmp_path, tokenizer, num_labels=1, max_steps=2, dropout=0.0)
    batch = next(iter(trainer.get_train_dataloader()))
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    trainer.model.train()
    with torch.no_grad():
        teacher = trainer.teacher(**inputs).logits.squeeze(-1)
        student = trainer.student(**inputs).logits.squeeze(-1)
        out = trainer.model(**batch, teacher_outputs=trainer.teacher(**inputs), distill=True)
    # Regression: the distillation term is the MSE between the two models' outputs, the task term MSE to the gold.
    torch.testing.assert_close(out.loss_components["kd"], torch.mean((student - teacher) ** 2))
    torch.testing.assert_close(out.loss_components["ce"], torch.mean((student - batch["labels"].float()) ** 2))
    assert out.loss_components["kd"].item() > 0
    trainer.train()
    assert all("loss_kd" in log for log in trainer.state.log_history if "loss" in log)


@pytest.mark.parametrize("method", ["kd", "pkd", "distilbert", "tinybert"])
def test_batch_times_accumulation_invariance(tmp_path, tokenizer, method):
    """4 x 1 and 2 x 2 must make the same SGD update (the Trainer's loss_is_scaled_for_ga trap), for logit and for
    intermediate losses: the rows differ in length, so this also holds only if padding never counts."""
    teacher = make_teacher(tokenizer, dropout=0.0)

    def make(folder, **config):
        torch.manual_seed(1)
        student = build_student(teacher, num_layers=2)
        return make_trainer(folder, tokenizer, teacher=teacher, student=student, method=method, **config)

    assert_batch_accumulation_invariance(make, tmp_path)


def test_evaluation_and_prediction_run_the_student_only(tmp_path, tokenizer):
    trainer = make_trainer(tmp_path, tokenizer)

    def fail(*args, **kwargs):
        raise AssertionError("the teacher ran during evaluation")

    trainer.teacher.forward = fail
    prediction = trainer.predict(trainer.eval_dataset)
    assert isinstance(prediction.predictions, np.ndarray) and prediction.predictions.shape == (16, 2)
    metrics = trainer.evaluate()
    assert "eval_accuracy" in metrics and "eval_loss" in metrics


LOAD_SCRIPT = """
import json, sys
import numpy as np, torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
model = AutoModelForSequenceClassification.from_pretrained(sys.argv[1]).eval()
tokenizer = AutoTokenizer.from_pretrained(sys.argv[1])
texts, labels = json.loads(sys.argv[2])
with torch.no_grad():
    logits = np.concatenate([model(**tokenizer([t], return_tensors="pt")).logits.numpy() for t in texts])
assert not [m for m in sys.modules if m.startswith(("bertdistill", "glue_tasks"))]
accuracy = float((logits.argmax(-1) == np.array(labels)).mean())
print(json.dumps({"accuracy": accuracy, "layers": model.config.num_hidden_layers, "logits": logits.tolist()}))
"""


def test_output_dir_is_a_plain_checkpoint_reproducing_eval_metrics(tmp_path, tokenizer):
    trainer = make_trainer(tmp_path / "out", tokenizer, max_steps=6)
    trainer.train()
    trainer.save_model()
    metrics = trainer.evaluate()
    texts = [SENTENCES[i % len(SENTENCES)] for i in range(16)]
    labels = list(trainer.eval_dataset["label"])
    result = subprocess.run(
        [sys.executable, "-c", LOAD_SCRIPT, str(tmp_path / "out"), json.dumps([texts, labels])],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["layers"] == 2
    assert loaded["accuracy"] == pytest.approx(metrics["eval_accuracy"])
    np.testing.assert_allclose(loaded["logits"], trainer.predict(trainer.eval_dataset).predictions, atol=1e-4)


class StopAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


class StepCounter(TrainerCallback):
    def __init__(self):
        self.steps = 0

    def on_step_end(self, args, state, control, **kwargs):
        self.steps += 1


ONE_SGD_STEP = dict(max_steps=1, optim="sgd", learning_rate=0.5, max_grad_norm=0.0, lr_scheduler_type="constant")


def assert_batch_accumulation_invariance(make, tmp_path, part=lambda t: t.student, moved=lambda key: True):
    """4 rows x 1 step and 2 rows x 2 accumulated steps must make the same SGD update of `part(trainer)` (the
    Trainer's `loss_is_scaled_for_ga` trap). `make(folder, **config)` builds a fresh trainer; the update must move
    some parameter whose name passes `moved` (so that the check cannot pass on a step that changed nothing)."""
    updates = []
    for batch, accumulation in ((4, 1), (2, 2)):
        trainer = make(tmp_path / f"{batch}x{accumulation}", per_device_train_batch_size=batch,
                       gradient_accumulation_steps=accumulation, **ONE_SGD_STEP)  # fmt: skip
        before = state(part(trainer))
        trainer.train()
        updates.append({k: v - before[k] for k, v in state(part(trainer)).items()})
    assert any(v.abs().max() > 1e-4 for k, v in updates[0].items() if moved(k)), "the step changed nothing"
    for key in updates[0]:
        torch.testing.assert_close(updates[0][key], updates[1][key], rtol=1e-4, atol=1e-6)


def assert_resumes_like(full, make, tmp_path, stop_at: int, part=lambda t: t.model, rtol=1e-5, atol=1e-6):
    """A run cut after `stop_at` steps (checkpointed there) and resumed reaches the weights of `full`, the same run
    trained without a break. `make(folder, callbacks=None)` builds the trainer with `full`'s settings; returns the
    cut trainer."""
    cut = make(tmp_path / "cut", callbacks=[StopAt(stop_at)])
    cut.train()
    assert cut.state.global_step == stop_at
    counter = StepCounter()
    resumed = make(tmp_path / "cut", callbacks=[counter])
    resumed.train(resume_from_checkpoint=str(tmp_path / "cut" / f"checkpoint-{stop_at}"))
    # it went on from the checkpoint (a resume that started over would train every step and match as well)
    assert counter.steps == full.state.global_step - stop_at and resumed.state.global_step == full.state.global_step
    for key, value in state(part(full)).items():
        torch.testing.assert_close(state(part(resumed))[key], value, rtol=rtol, atol=atol)
    return cut


def test_resume_after_interruption_reaches_the_same_weights(tmp_path, tokenizer):
    common = dict(max_steps=6, save_strategy="steps", save_steps=3)
    teacher = make_teacher(tokenizer)
    full = make_trainer(tmp_path / "full", tokenizer, teacher=teacher, **common)
    full.train()
    make = functools.partial(make_trainer, tokenizer=tokenizer, teacher=teacher, **common)
    interrupted = assert_resumes_like(full, make, tmp_path, 3, part=lambda t: t.student)
    assert not any(  # the cut run really stopped short of the full one
        torch.equal(v, full.student.state_dict()[k])
        for k, v in state(interrupted.student).items()
        if "encoder.layer.0.attention.self.query.weight" in k
    )


def test_best_model_is_loaded_at_the_end(tmp_path, tokenizer):
    trainer = make_trainer(
        tmp_path,
        tokenizer,
        max_steps=6,
        eval_strategy="steps",
        eval_steps=2,
        save_steps=2,
        save_strategy="steps",
        load_best_model_at_end=True,
        metric_for_best_model="accuracy",
        learning_rate=5e-3,
    )
    trainer.train()
    best = trainer.state.best_model_checkpoint
    assert best is not None
    import safetensors.torch

    saved = safetensors.torch.load_file(f"{best}/model.safetensors")
    for key, value in trainer.student.state_dict().items():
        torch.testing.assert_close(value, saved[key])


def test_model_card_and_push_to_hub_at_the_hfapi_boundary(tmp_path, tokenizer, monkeypatch):
    calls = {}

    def create_repo(self, repo_id, **kwargs):
        calls["create_repo"] = repo_id
        return SimpleNamespace(repo_id=repo_id)

    def upload_folder(self, repo_id, folder_path, **kwargs):
        calls["upload"] = (repo_id, sorted(p.name for p in __import__("pathlib").Path(folder_path).iterdir()))
        calls["card"] = (__import__("pathlib").Path(folder_path) / "README.md").read_text()

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    teacher = make_teacher(tokenizer)
    teacher.name_or_path = "someone/minilm-rte"
    trainer = make_trainer(
        tmp_path / "out",
        tokenizer,
        teacher=teacher,
        max_steps=2,
        push_to_hub=True,
        hub_model_id="someone/tiny-student",
    )
    trainer.train()
    trainer.push_to_hub(task_name="rte", metrics={"eval_accuracy": 0.625, "eval_loss": 0.7})
    assert calls["create_repo"] == "someone/tiny-student"
    repo, files = calls["upload"]
    assert repo == "someone/tiny-student"
    assert {"README.md", "config.json", "model.safetensors", "tokenizer.json"} <= set(files)
    card = calls["card"]
    assert "base_model: someone/minilm-rte" in card
    assert "model-index:" in card and "value: 0.625" in card and "config: rte" in card
    assert "alpha_kd" in card and "| this model | 2 | 32 |" in card


def test_config_and_pairing_errors(tmp_path, tokenizer):
    with pytest.raises(ValueError, match="temperature must be > 0"):
        DistillationTrainingConfig(output_dir=str(tmp_path), temperature=0)
    with pytest.raises(ValueError, match="alpha_kd must be >= 0"):
        DistillationTrainingConfig(output_dir=str(tmp_path), alpha_kd=-1)
    with pytest.raises(ValueError, match="Every loss term has weight 0"):
        make_trainer(tmp_path, tokenizer, alpha_ce=0.0, alpha_kd=0.0)
    teacher = make_teacher(tokenizer, num_labels=3)
    with pytest.raises(ValueError, match="Teacher predicts 3 labels but the student 2"):
        make_trainer(
            tmp_path, tokenizer, teacher=teacher, student=build_student(make_teacher(tokenizer), num_layers=1)
        )


def test_evaluate_model_returns_predictions_matching_its_metric(tokenizer):
    from bertdistill.glue_run import evaluate_model

    task = get_task("sst2")
    model = make_teacher(tokenizer).eval()
    sentences = ["the movie was good", "bad", "a fine film", "not good at all", "good good"]
    data = datasets.Dataset.from_dict({**tokenizer(sentences), "labels": [1, 0, 1, 0, 1]})
    metrics, predictions = evaluate_model(model, data, tokenizer, task, batch_size=2, return_predictions=True)
    with torch.no_grad():
        expected = [model(**tokenizer(s, return_tensors="pt")).logits.argmax(-1).item() for s in sentences]
    assert predictions == expected
    assert metrics["eval_accuracy"] == pytest.approx(np.mean(np.array(expected) == [1, 0, 1, 0, 1]))
    assert evaluate_model(model, data, tokenizer, task, batch_size=2)["eval_accuracy"] == metrics["eval_accuracy"]
