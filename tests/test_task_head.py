"""Where an untrained regression head starts (`bertdistill.task_head`): which layers count as its output, the
training labels' mean as their bias in every trainer's networks (the student, BYOT's exits, ONE's branches, DML's
peers) and in the teacher script, heads copied from a trained model left alone, `zero` and bad values."""

import numpy as np
import pytest
import torch
from transformers import BertForSequenceClassification, BertModel

from bertdistill import (
    BYOTConfig,
    BYOTTrainer,
    DistillationTrainingConfig,
    DMLConfig,
    DMLTrainer,
    MultiExitBertForSequenceClassification,
    ONEConfig,
    ONETrainer,
    StudentFineTuneTrainer,
)
from bertdistill.task_head import regression_label_mean, start_regression_heads, untrained_regression_outputs

from conftest import load_script, save_with_tokenizer, tiny_config
from test_trainer import tiny_dataset

CONFIG = dict(per_device_train_batch_size=4, learning_rate=1e-3, max_steps=2, save_strategy="no", report_to=[],
              disable_tqdm=True, seed=3, use_cpu=True, bf16=False, train_sampling_strategy="random")  # fmt: skip


def regression_data(tokenizer, shift=3.0):
    data = tiny_dataset(tokenizer, n=16, num_labels=1)
    return data.map(lambda row: {"label": row["label"] + shift})


def network(tokenizer, num_labels=1, layers=3, seed=0):
    torch.manual_seed(seed)
    config = tiny_config(len(tokenizer), num_labels=num_labels, layers=layers)
    config.problem_type = "regression" if num_labels == 1 else "single_label_classification"
    return BertForSequenceClassification(config)


def test_untrained_regression_outputs_are_the_heads_last_layers(tokenizer):
    model = network(tokenizer)
    assert [name for name, _ in untrained_regression_outputs(model)] == ["classifier"]
    multi = MultiExitBertForSequenceClassification.from_bert(network(tokenizer), [1, 2])
    assert [name for name, _ in untrained_regression_outputs(multi)] == [
        "exits.1.classifier", "exits.2.classifier", "exits.3.classifier"
    ]  # fmt: skip
    assert untrained_regression_outputs(network(tokenizer, num_labels=3)) == []  # classes: not a regression head
    with torch.no_grad():
        model.classifier.bias.fill_(0.25)  # trained (a fine-tuned teacher's head copied into a student)
    assert untrained_regression_outputs(model) == []


def test_start_regression_heads_sets_the_label_mean(tokenizer):
    data = regression_data(tokenizer)
    mean = float(np.mean(data["label"]))
    assert regression_label_mean(data) == pytest.approx(mean)
    model = network(tokenizer)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    record = start_regression_heads(model, data)
    assert record == {"how": "label_mean", "value": pytest.approx(mean), "layers": ["classifier"]}
    torch.testing.assert_close(model.classifier.bias, torch.full((1,), mean))
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed == ["classifier.bias"]
    assert start_regression_heads(model, data) is None  # now trained-looking: left alone
    fresh = network(tokenizer)
    assert start_regression_heads(fresh, data, "zero") is None and not fresh.classifier.bias.any()
    assert start_regression_heads(network(tokenizer), None) is None  # no labels (data-free): stays at 0
    with pytest.raises(ValueError, match="regression_head_init must be one of label_mean, zero"):
        start_regression_heads(fresh, data, "median")
    with pytest.raises(ValueError, match="regression_head_init must be one of"):
        DistillationTrainingConfig("out", regression_head_init="mean")


@pytest.mark.parametrize(
    "trainer_class, config_class, extra",
    [
        (StudentFineTuneTrainer, DistillationTrainingConfig, {}),
        (BYOTTrainer, BYOTConfig, {"exit_layers": "1,2"}),
        (ONETrainer, ONEConfig, {"one_branches": 3}),
        (ONETrainer, ONEConfig, {"one_branches": 3, "one_new_heads": True}),
        (DMLTrainer, DMLConfig, {}),
    ],
)
def test_every_network_of_a_trainer_starts_at_the_label_mean(tmp_path, tokenizer, trainer_class, config_class, extra):
    data = regression_data(tokenizer)
    mean = float(np.mean(data["label"]))

    def make(**config):
        peers = {"peers": [network(tokenizer, seed=1)]} if trainer_class is DMLTrainer else {}
        return trainer_class(model=network(tokenizer), args=config_class(str(tmp_path), **CONFIG, **extra, **config),
                             train_dataset=data, processing_class=tokenizer, **peers)  # fmt: skip

    def output_biases(trainer):
        return {name: module.bias.detach() for name, module in trainer.model.named_modules()
                if isinstance(module, torch.nn.Linear) and module.out_features == 1}  # fmt: skip

    trainer = make()
    biases = output_biases(trainer)
    # the student's head; BYOT: its 3 exits; ONE: the network's and each branch's; DML: the student's and the peer's
    expected = {StudentFineTuneTrainer: 1, BYOTTrainer: 3, ONETrainer: 3, DMLTrainer: 2}[trainer_class]
    assert len(biases) == expected, sorted(biases)
    for name, bias in biases.items():
        torch.testing.assert_close(bias, torch.full((1,), mean), msg=name)
    assert trainer.regression_head_start["value"] == pytest.approx(mean)
    trainer.create_model_card(task_name="stsb")
    assert f"| regression_head_init | label_mean ({mean:.4f}: " in (tmp_path / "README.md").read_text()
    # zero: transformers' initialisation, and nothing in the card
    zero = make(regression_head_init="zero")
    assert all(not bias.any() for bias in output_biases(zero).values())
    assert zero.regression_head_start is None


def test_a_head_copied_from_a_trained_teacher_is_left_alone(tmp_path, tokenizer):
    data = regression_data(tokenizer)
    student = network(tokenizer)
    with torch.no_grad():
        student.classifier.bias.fill_(1.5)
    trainer = StudentFineTuneTrainer(model=student, args=DistillationTrainingConfig(str(tmp_path), **CONFIG),
                                     train_dataset=data, processing_class=tokenizer)  # fmt: skip
    torch.testing.assert_close(trainer.student.classifier.bias.detach(), torch.tensor([1.5]))
    assert trainer.regression_head_start is None


def test_finetune_teacher_starts_the_stsb_head_at_the_label_mean(glue_dir, tmp_path, tokenizer):
    finetune_teacher = load_script("finetune_teacher")
    base = save_with_tokenizer(BertModel(tiny_config(len(tokenizer))), tokenizer, tmp_path / "base")
    common = ["--task_name", "stsb", "--glue_dir", str(glue_dir), "--model_name_or_path", str(base),
              "--max_train_samples", "64", "--max_eval_samples", "16", "--max_seq_length", "32", "--max_steps", "1",
              "--learning_rate", "1e-9", "--per_device_train_batch_size", "4", "--report_to", "none",
              "--save_strategy", "no", "--use_cpu", "true"]  # fmt: skip
    rows = (glue_dir / "STS-B" / "train.tsv").read_text(encoding="utf-8").splitlines()[1:65]
    mean = float(np.mean([float(row.split("\t")[-1]) for row in rows]))
    finetune_teacher.main([*common, "--output_dir", str(tmp_path / "mean")])
    assert (
        f"| regression_head_init | label_mean ({mean:.4f}: classifier) |"
        in (tmp_path / "mean" / "README.md").read_text()
    )
    bias = BertForSequenceClassification.from_pretrained(tmp_path / "mean").classifier.bias
    assert abs(bias.item() - mean) < 1e-3  # one step at learning rate 1e-9 barely moves it
    finetune_teacher.main([*common, "--output_dir", str(tmp_path / "zero"), "--regression_head_init", "zero"])
    assert "regression_head_init" not in (tmp_path / "zero" / "README.md").read_text()
    assert abs(BertForSequenceClassification.from_pretrained(tmp_path / "zero").classifier.bias.item()) < 1e-3
    with pytest.raises(ValueError, match="regression_head_init must be one of"):
        finetune_teacher.main([*common, "--output_dir", str(tmp_path / "bad"), "--regression_head_init", "mean"])
