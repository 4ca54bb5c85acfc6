"""ONNX export and ONNX Runtime INT8: exported logits equal PyTorch's, INT8 stays close and is smaller, static
quantization writes a QDQ graph, evaluation matches the PyTorch path, bad inputs are refused."""

import numpy as np
import onnx
import pytest
import torch

from bertdistill.compression.onnx_runtime import (
    OnnxSequenceClassifier,
    evaluate_onnx,
    export_onnx,
    onnx_size,
    quantize_onnx,
)
from bertdistill.compression.pruned_bert import PrunedBertConfig, PrunedBertForSequenceClassification
from bertdistill.glue_run import evaluate_model, tokenize_split
from glue_tasks import get_task, load_glue_split

from conftest import make_teacher

SENTENCES = ["a good movie", "it was not bad, and the film is good in a way", "bad", "the movie of the year"]


@pytest.fixture(scope="module")
def model(tokenizer):
    return make_teacher(tokenizer, dropout=0.0).eval()


@pytest.fixture(scope="module")
def exported(model, tokenizer, tmp_path_factory):
    return export_onnx(model, tokenizer, tmp_path_factory.mktemp("onnx"))


def logits_of(model, tokenizer, sentences):
    encoded = tokenizer(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(**encoded).logits


@pytest.mark.parametrize("batch", [1, 4])
def test_exported_logits_equal_pytorch(model, tokenizer, exported, batch):
    onnx_model = OnnxSequenceClassifier(exported)
    expected = logits_of(model, tokenizer, SENTENCES[:batch])
    torch.testing.assert_close(logits_of(onnx_model, tokenizer, SENTENCES[:batch]), expected, atol=1e-4, rtol=1e-4)
    assert (exported / "config.json").is_file() and (exported / "tokenizer.json").is_file()


def test_sessions_do_not_spin_unless_asked(exported):
    def spinning(model):
        return model.session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning")

    # Spinning worker threads slow whatever runs next in the process (the PyTorch models timed side by side).
    assert spinning(OnnxSequenceClassifier(exported)) == "0"
    assert spinning(OnnxSequenceClassifier(exported, allow_spinning=True)) == "1"


def test_pruned_class_exports(tokenizer, tmp_path):
    config = PrunedBertConfig(attention_head_size=8, vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                              num_attention_heads=2, intermediate_size=48, num_labels=3)  # fmt: skip
    torch.manual_seed(0)
    pruned = PrunedBertForSequenceClassification(config).eval()
    folder = export_onnx(pruned, tokenizer, tmp_path)
    torch.testing.assert_close(logits_of(OnnxSequenceClassifier(folder), tokenizer, SENTENCES),
                               logits_of(pruned, tokenizer, SENTENCES), atol=1e-4, rtol=1e-4)  # fmt: skip


def test_dynamic_int8_is_close_and_smaller(model, tokenizer, exported, tmp_path):
    int8 = quantize_onnx(exported, tmp_path / "int8")
    assert onnx_size(int8) < 0.8 * onnx_size(exported)  # tiny matrices: the per-tensor overheads weigh more
    quantized = logits_of(OnnxSequenceClassifier(int8), tokenizer, SENTENCES)
    reference = logits_of(model, tokenizer, SENTENCES)
    assert (quantized - reference).abs().max() < 0.1 * reference.abs().max() + 0.05
    graph = onnx.load(str(int8 / "model.onnx")).graph
    assert any(node.op_type in ("MatMulInteger", "DynamicQuantizeMatMul") for node in graph.node)
    assert (int8 / "tokenizer.json").is_file() and (int8 / "config.json").is_file()


def test_op_types_leave_embeddings_float_and_per_channel_keeps_one_scale_per_column(
    model, tokenizer, exported, tmp_path
):
    def initializers(folder):
        return {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(str(folder / "model.onnx")).graph.initializer}

    everything = initializers(quantize_onnx(exported, tmp_path / "all"))
    matmul_only = initializers(quantize_onnx(exported, tmp_path / "matmul", op_types=("MatMul",)))
    per_channel = initializers(quantize_onnx(exported, tmp_path / "channel", per_channel=True, op_types=("MatMul",)))
    table = model.bert.embeddings.word_embeddings.weight.detach().numpy()
    # The word-embedding table: an INT8 initializer by default, the float32 table itself with op_types=MatMul.
    assert not any(a.shape == table.shape and a.dtype == np.float32 for a in everything.values())
    assert any(a.shape == table.shape and a.dtype == np.float32 and np.array_equal(a, table)
               for a in matmul_only.values())  # fmt: skip
    scales = [a for name, a in per_channel.items() if name.endswith("_scale") and a.size > 1]
    assert scales and all(a.ndim == 1 for a in scales)  # one scale per output channel
    assert not [a for name, a in matmul_only.items() if name.endswith("_scale") and a.size > 1]
    assert "op_types" in (tmp_path / "matmul" / "quantization.json").read_text()


def test_static_int8_writes_qdq_from_calibration(tokenizer, exported, tmp_path):
    batches = [dict(tokenizer(SENTENCES[i : i + 2], padding=True, return_tensors="np")) for i in (0, 2)]
    int8 = quantize_onnx(exported, tmp_path / "static", mode="static", calibration=batches)
    ops = {node.op_type for node in onnx.load(str(int8 / "model.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert logits_of(OnnxSequenceClassifier(int8), tokenizer, SENTENCES).shape == (4, 2)


def test_evaluate_onnx_matches_evaluate_model(model, tokenizer, exported, glue_dir):
    task = get_task("rte")
    dev = tokenize_split(load_glue_split(task, "validation", glue_dir).select(range(40)), task, tokenizer, 48)
    expected = evaluate_model(model, dev, tokenizer, task, use_cpu=True)
    got = evaluate_onnx(OnnxSequenceClassifier(exported), dev, tokenizer, task, batch_size=16)
    assert set(got) == {"eval_accuracy"} and got["eval_accuracy"] == pytest.approx(expected["eval_accuracy"])


def test_bad_inputs(model, tokenizer, exported, tmp_path):
    with pytest.raises(FileNotFoundError, match="no model.onnx"):
        quantize_onnx(tmp_path / "empty", tmp_path / "out")
    with pytest.raises(ValueError, match="mode must be one of"):
        quantize_onnx(exported, tmp_path / "out", mode="int4")
    with pytest.raises(ValueError, match="static quantization needs calibration"):
        quantize_onnx(exported, tmp_path / "out", mode="static")
    with pytest.raises(ValueError, match="exports sequence classifiers, got BertModel"):
        export_onnx(model.bert, tokenizer, tmp_path / "base")
    with pytest.raises(FileNotFoundError):
        OnnxSequenceClassifier(tmp_path / "empty")
    assert np.isfinite(logits_of(OnnxSequenceClassifier(exported), tokenizer, SENTENCES).numpy()).all()
