"""General (masked-LM) distillation with scripts/distill_general.py on a tiny random BertForMaskedLM teacher."""

import json

import pytest
import torch
from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification, BertForMaskedLM

from conftest import load_script, make_teacher, tiny_config

distill_general = load_script("distill_general")


@pytest.fixture
def mlm_teacher(tmp_path, tokenizer):
    torch.manual_seed(0)
    path = tmp_path / "mlm-teacher"
    BertForMaskedLM(tiny_config(len(tokenizer), dropout=0.0)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def corpus(tmp_path, glue_dir):
    """Raw text: the first 600 SST-2 training sentences, one per line."""
    lines = (glue_dir / "SST-2" / "train.tsv").read_text(encoding="utf-8").splitlines()[1:601]
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(line.split("\t")[0] for line in lines) + "\n", encoding="utf-8")
    return path


def test_general_distillation_lowers_the_students_mlm_loss(mlm_teacher, corpus, tmp_path):
    out = tmp_path / "student"
    metrics = distill_general.main([
        "--teacher_model_name_or_path", str(mlm_teacher), "--train_file", str(corpus), "--output_dir", str(out),
        "--student_num_layers", "2", "--max_seq_length", "32", "--validation_rows", "64", "--max_steps", "40",
        "--per_device_train_batch_size", "16", "--learning_rate", "3e-3", "--report_to", "none",
        "--disable_tqdm", "true", "--use_cpu", "true", "--logging_steps", "10", "--seed", "0",
    ])  # fmt: skip
    assert metrics["eval_loss"] < metrics["eval_before_loss"] - 0.5, metrics
    student = AutoModelForMaskedLM.from_pretrained(out)
    assert student.config.num_hidden_layers == 2
    state = json.loads((out / "checkpoint-40" / "trainer_state.json").read_text())
    logged = [log for log in state["log_history"] if "loss" in log]
    assert {"loss_ce", "loss_kd", "loss_cos"} <= set(logged[-1])


def test_general_distillation_refuses_a_teacher_without_mlm_head(tmp_path, tokenizer, corpus):
    path = tmp_path / "classifier"
    make_teacher(tokenizer).save_pretrained(path)
    with pytest.raises(ValueError, match="no pre-trained masked-LM head"):
        distill_general.main(["--teacher_model_name_or_path", str(path), "--train_file", str(corpus),
                              "--output_dir", str(tmp_path / "out"), "--student_num_layers", "2"])  # fmt: skip
    with pytest.raises(ValueError, match="exactly one of --train_file and --dataset_name"):
        distill_general.main(["--teacher_model_name_or_path", str(path), "--output_dir", str(tmp_path / "out")])
    with pytest.raises(FileNotFoundError, match="Text file not found"):
        distill_general.main(["--teacher_model_name_or_path", str(path), "--train_file", str(tmp_path / "none.txt"),
                              "--output_dir", str(tmp_path / "out"), "--student_num_layers", "2"])  # fmt: skip
    assert not (tmp_path / "out").exists()


def test_tinybert_general_distillation_into_a_narrow_encoder(tmp_path, tokenizer, corpus, glue_dir, teacher_dir):
    from test_scripts import distill_args, distill_glue
    from transformers import AutoModel, BertModel

    torch.manual_seed(0)
    teacher = tmp_path / "encoder"
    BertModel(tiny_config(len(tokenizer), dropout=0.0)).save_pretrained(teacher)  # a bare encoder, no heads
    tokenizer.save_pretrained(teacher)
    out = tmp_path / "general-tiny"
    metrics = distill_general.main([
        "--method", "tinybert", "--teacher_model_name_or_path", str(teacher), "--train_file", str(corpus),
        "--output_dir", str(out), "--student_num_layers", "2", "--student_hidden_size", "16",
        "--student_intermediate_size", "32", "--max_seq_length", "32", "--validation_rows", "64", "--max_steps", "30",
        "--per_device_train_batch_size", "16", "--learning_rate", "3e-3", "--report_to", "none",
        "--disable_tqdm", "true", "--use_cpu", "true", "--seed", "0",
    ])  # fmt: skip
    assert metrics["eval_distill_loss"] < 0.7 * metrics["eval_before_distill_loss"], metrics
    assert {"eval_loss_emb", "eval_loss_hidden", "eval_loss_attn"} <= set(metrics)
    encoder = AutoModel.from_pretrained(out)
    assert (encoder.config.hidden_size, encoder.config.num_hidden_layers) == (16, 2)
    assert (out / "distillation_extras.safetensors").is_file()
    # The general student is the starting point of task distillation.
    task_dir = tmp_path / "task"
    distill_glue.main(distill_args(teacher_dir, glue_dir, task_dir, "rte", "--student_model_name_or_path", str(out)))
    student = AutoModelForSequenceClassification.from_pretrained(task_dir)
    assert student.config.hidden_size == 16 and student.config.num_labels == 2
