"""INT8 dynamic quantization of a student: close outputs, smaller weights, and compare_models' --int8 rows."""

import json

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from bertdistill.compression.quantization import quantize_dynamic_int8, serialized_size

from conftest import load_script, make_teacher


def test_int8_copy_keeps_outputs_close_and_weighs_less():
    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=256, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=1024, max_position_embeddings=32)  # fmt: skip
    model = BertForSequenceClassification(config).eval()
    quantized = quantize_dynamic_int8(model)
    linears = [m for m in quantized.modules() if type(m).__name__ == "Linear" and "quantized" in type(m).__module__]
    assert len(linears) == 2 * 6 + 2, "q, k, v, attention output, intermediate, output per layer; pooler, classifier"
    assert all(
        type(m).__module__ == "torch.nn.modules.linear" for m in model.modules() if "Linear" in type(m).__name__
    )
    inputs = {"input_ids": torch.randint(0, 50, (4, 16))}
    with torch.no_grad():
        reference, got = model(**inputs).logits, quantized(**inputs).logits
    torch.testing.assert_close(got, reference, atol=0.05, rtol=0.05)
    assert serialized_size(quantized) < 0.4 * serialized_size(model), "linear weights dominate: ~4x smaller"


def test_compare_models_int8_rows(tmp_path, tokenizer, glue_dir):
    for name, layers in (("teacher", 4), ("student", 2)):
        model = make_teacher(tokenizer, layers=layers)
        model.save_pretrained(tmp_path / name)
        tokenizer.save_pretrained(tmp_path / name)
        (tmp_path / name / "eval_results.json").write_text(json.dumps({"eval_accuracy": 0.5}))
    compare = load_script("compare_models")
    rows = compare.main([str(tmp_path / "teacher"), str(tmp_path / "student"), "--task_name", "sst2", "--glue_dir",
                         str(glue_dir), "--max_seq_length", "32", "--repeats", "2", "--int8"])  # fmt: skip
    by_name = {row["model"]: row for row in rows}
    student, student_int8 = by_name[str(tmp_path / "student")], by_name[str(tmp_path / "student") + " (int8)"]
    assert len(rows) == 4 and student["int8_delta"] is None
    assert student_int8["parameters"] == student["parameters"] and student_int8["latency_b32_ms"] > 0
    fp32 = student_int8["measured_fp32"]["accuracy"]
    assert 0 <= student_int8["accuracy"] <= 1 and student["accuracy"] == 0.5, "fp32 row: its eval_results.json"
    assert student_int8["int8_delta"] == pytest.approx(100 * (student_int8["accuracy"] - fp32))


def test_a_cpu_without_int8_kernels_is_refused_before_work(monkeypatch):
    model = BertForSequenceClassification(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                                     num_attention_heads=2, intermediate_size=32))  # fmt: skip
    import bertdistill.compression.quantization as quantization

    monkeypatch.setattr(quantization, "_supported_engines", lambda: ["none"])
    with pytest.raises(ValueError, match="no INT8 CPU engine"):
        quantize_dynamic_int8(model)


def test_onnx_runtime_without_a_cpu_provider_is_refused(monkeypatch, tmp_path, tokenizer):
    import onnxruntime

    from bertdistill.compression.onnx_runtime import export_onnx, quantize_onnx

    folder = export_onnx(make_teacher(tokenizer).eval(), tokenizer, tmp_path / "float")
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider"])
    with pytest.raises(ValueError, match="no CPUExecutionProvider"):
        quantize_onnx(folder, tmp_path / "int8")
    assert not (tmp_path / "int8").exists()


def test_compare_models_feeds_each_model_its_own_tokenizer(tmp_path, tokenizer, glue_dir):
    """A teacher and a model of another, smaller vocabulary (letters only): each reads the dev sentences through its
    own tokenizer; the teacher's ids would index past the small model's embeddings."""
    import string

    from transformers import BertTokenizerFast

    from conftest import SPECIAL, tiny_config

    chars = string.ascii_lowercase
    (tmp_path / "vocab.txt").write_text("\n".join([*SPECIAL, *chars, *(f"##{c}" for c in chars)]) + "\n")
    small_tokenizer = BertTokenizerFast(vocab=str(tmp_path / "vocab.txt"), do_lower_case=True)
    assert len(small_tokenizer) < len(tokenizer)
    teacher = make_teacher(tokenizer, layers=2)
    small = BertForSequenceClassification(tiny_config(len(small_tokenizer), layers=1))
    for name, model, own in (("teacher", teacher, tokenizer), ("small", small, small_tokenizer)):
        model.save_pretrained(tmp_path / name)
        own.save_pretrained(tmp_path / name)
    compare = load_script("compare_models")
    rows = compare.main([str(tmp_path / "teacher"), str(tmp_path / "small"), "--task_name", "sst2", "--glue_dir",
                         str(glue_dir), "--max_seq_length", "32", "--repeats", "2"])  # fmt: skip
    assert [row["layers"] for row in rows] == [2, 1] and all(row["latency_b32_ms"] > 0 for row in rows)
    tokenizers = compare.own_tokenizers([str(tmp_path / "teacher"), str(tmp_path / "small")])
    assert len(tokenizers[str(tmp_path / "small")]) == len(small_tokenizer)
