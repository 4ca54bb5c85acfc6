"""scripts/compress.py: the pipeline end to end on a tiny teacher and a few real GLUE rows (every stage, resume,
report, budget), and every bad input refused before any work."""

import json
import subprocess
import sys

import pytest
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from conftest import load_script


@pytest.fixture(scope="module")
def compress():
    return load_script("compress")


def base_argv(teacher_dir, glue_dir, out):
    return ["--task_name", "rte", "--glue_dir", str(glue_dir), "--teacher_model_name_or_path", str(teacher_dir),
            "--output_dir", str(out), "--max_train_samples", "24", "--max_eval_samples", "16", "--max_seq_length",
            "32", "--per_device_train_batch_size", "8", "--importance_rows", "16", "--calibration_rows", "8",
            "--repeats", "2"]  # fmt: skip


@pytest.mark.parametrize(
    ("flags", "match"),
    [
        (["--stages", "prune,distill"], "in the order distill -> prune"),
        (["--stages", "distill,shrink"], r"unknown \['shrink'\]"),
        (["--stages", "prune"], "exactly one of --target_sparsity, --target_params and per-layer counts"),
        (["--stages", "prune", "--target_sparsity", "1.0"], r"--target_sparsity must be in \[0, 1\)"),
        (["--stages", "prune", "--target_sparsity", "-0.1"], r"--target_sparsity must be in \[0, 1\)"),
        (["--stages", "factorize"], "exactly one of --rank and --energy"),
        (["--stages", "factorize", "--rank", "0"], "--rank must be at least 1"),
        (["--stages", "factorize", "--energy", "1.5"], r"--energy must be in \(0, 1\]"),
        (["--stages", "int8", "--int8_mode", "fp4"], "--int8_mode must be one of"),
        (["--stages", "vocab", "--vocab_corpus", "/nonexistent/corpus.txt"], "--vocab_corpus not found"),
        (["--stages", "int8", "--max_bytes", "-1"], "--max_bytes must be positive"),
        (["--stages", "distill,factorize", "--rank", "1000"], "--rank 1000 is larger than any layer allows"),
        (["--stages", "prune", "--heads_per_layer", "two"], "--heads_per_layer takes a count"),
        (["--stages", "prune", "--neurons_per_layer", "8,0"], "every layer keeps at least 1"),
        (["--stages", "prune", "--target_sparsity", "0.5", "--heads_per_layer", "2"], "exactly one of"),
        (["--stages", "prune", "--heads_per_layer", "2", "--prune_steps", "2"], "--prune_steps > 1 needs a global"),
        (["--stages", "qat,int8", "--int8_per_channel", "true"], "--int8_per_channel after the qat stage"),
    ],
)
def test_bad_recipes_are_refused_before_any_work(compress, teacher_dir, glue_dir, tmp_path, flags, match):
    out = tmp_path / "out"
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        compress.main([*base_argv(teacher_dir, glue_dir, out), *flags])
    assert not out.exists(), "nothing written"


def test_int8_is_per_channel_unless_it_follows_qat(compress):
    def parsed(stages):
        return compress.CompressArguments(teacher_model_name_or_path="t", output_dir="o", stages=stages)

    assert parsed("distill,int8").int8_per_channel is True
    assert parsed("distill,qat,int8").int8_per_channel is False


def test_int8_reduce_range_follows_the_cpu_and_the_qat_stage_trains_for_it(
    compress, teacher_dir, glue_dir, tmp_path, monkeypatch
):
    from bertdistill.compression import onnx_runtime

    def parsed(**kwargs):
        return compress.CompressArguments(teacher_model_name_or_path="t", output_dir="o", **kwargs)

    for without_vnni in (True, False):
        monkeypatch.setattr(onnx_runtime, "x86_without_vnni", lambda answer=without_vnni: answer)
        assert parsed().int8_reduce_range is without_vnni
        assert parsed(int8_reduce_range=False).int8_reduce_range is False

    out = tmp_path / "out"
    compress.main([*base_argv(teacher_dir, glue_dir, out), "--stages", "qat,int8", "--int8_reduce_range", "true"])
    assert json.loads((out / "1-qat" / "config.json").read_text())["qat_scheme"] == "onnx_dynamic_reduce_range"
    assert json.loads((out / "2-int8" / "quantization.json").read_text())["reduce_range"] is True
    assert json.loads((out / "2-int8" / "stage.json").read_text())["reduce_range"] is True


def test_empty_corpus_and_missing_teacher_are_refused(compress, teacher_dir, glue_dir, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(ValueError, match="is empty"):
        compress.main([*base_argv(teacher_dir, glue_dir, tmp_path / "a"), "--stages", "vocab", "--vocab_corpus",
                       str(empty)])  # fmt: skip
    with pytest.raises((ValueError, FileNotFoundError), match="teacher"):
        compress.main(base_argv(tmp_path / "no-teacher", glue_dir, tmp_path / "b"))


def test_every_stage_end_to_end_resumes_and_reports(compress, teacher_dir, glue_dir, tmp_path):
    out, report = tmp_path / "out", tmp_path / "report" / "rte.md"
    argv = [*base_argv(teacher_dir, glue_dir, out), "--stages", "distill,prune,factorize,qat,vocab,int8",
            "--student_num_layers", "2", "--target_sparsity", "0.5", "--prune_steps", "2", "--rank", "8",
            "--no_keep_characters", "--report", str(report)]  # fmt: skip
    result = compress.main(argv)
    names = [row["run"] for row in result["rows"]]
    assert names == ["teacher", "1-distill", "2-prune", "3-factorize", "4-qat", "5-vocab", "6-int8/float", "6-int8"]
    rows = {row["run"]: row for row in result["rows"]}
    assert rows["1-distill"]["parameters"] < rows["teacher"]["parameters"]
    assert rows["2-prune"]["parameters"] < rows["1-distill"]["parameters"]
    assert rows["5-vocab"]["parameters"] < rows["4-qat"]["parameters"]
    # INT8 is smaller than float on real sizes (test_onnx_runtime); with rank-8 factors of a 32-wide model the
    # per-tensor scales and zero points outweigh the saving, so here it is only checked to be reported.
    assert rows["6-int8"]["bytes"] > 0 and rows["6-int8/float"]["bytes"] > 0
    for row in result["rows"][1:]:
        assert row["made_from"] in names and row["latency_b1_ms"] > 0 and 0 <= row["accuracy"] <= 1
    # Every stage folder is whole and loads without bertdistill (the registered classes ship with the weights).
    for stage in ("1-distill", "2-prune", "3-factorize", "4-qat", "5-vocab"):
        folder = out / stage
        assert json.loads((folder / "stage.json").read_text())["stage"] == stage.split("-", 1)[1]
        assert not list(folder.glob("checkpoint-*")), "training checkpoints are removed once the stage is done"
        code = ("import sys; from transformers import AutoModelForSequenceClassification as A; "
                f"A.from_pretrained({str(folder)!r}, trust_remote_code=True); "
                "assert not any(m.startswith('bertdistill') for m in sys.modules)")  # fmt: skip
        subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)
    assert len(AutoTokenizer.from_pretrained(out / "5-vocab")) < len(AutoTokenizer.from_pretrained(teacher_dir))
    assert (out / "6-int8" / "model.onnx").is_file() and not list(out.glob("*.partial"))
    text = report.read_text()
    assert "| 6-int8 | 6-int8/float" not in text and "| 6-int8 | 5-vocab |" in text
    assert report.with_suffix(".png").stat().st_size > 1000
    assert json.loads(report.with_suffix(".json").read_text())["rows"][-1]["run"] == "6-int8"

    # Re-running skips every finished stage; an interrupted stage (a .partial folder) is redone.
    stamps = {p.name: (p / "stage.json").stat().st_mtime_ns for p in out.iterdir()}
    (out / "6-int8").rename(out / "6-int8.partial")
    (out / "6-int8.partial" / "stale.txt").write_text("left by an interrupted run")
    again = compress.main([*argv, "--max_bytes", str(rows["5-vocab"]["bytes"])])
    assert {p.name: (p / "stage.json").stat().st_mtime_ns for p in out.iterdir() if p.name != "6-int8"} == {
        k: v for k, v in stamps.items() if k != "6-int8"
    }
    assert not (out / "6-int8" / "stale.txt").exists()
    assert again["chosen"] in ("5-vocab", "6-int8/float", "6-int8")
    with pytest.raises(ValueError, match="Nothing fits the budget .*the smallest bytes is"):
        compress.main([*argv, "--max_bytes", "1000"])


def test_report_rows_start_from_the_given_student(compress, tmp_path):
    folders = [tmp_path / "1-prune", tmp_path / "2-int8"]
    (tmp_path / "2-int8" / "float").mkdir(parents=True)
    entries = compress.report_entries(tmp_path / "teacher", folders, tmp_path / "student")
    assert [(name, made_from) for name, _, made_from in entries] == [
        ("teacher", None), ("student", "teacher"), ("1-prune", "student"), ("2-int8/float", "1-prune"),
        ("2-int8", "1-prune"),
    ]  # fmt: skip
    assert [name for name, _, _ in compress.report_entries(tmp_path / "teacher", folders)][:2] == [
        "teacher",
        "1-prune",
    ]


def test_prune_recovers_from_its_input_model_when_asked(compress, teacher_dir, glue_dir, tmp_path, monkeypatch):
    teachers = []

    class Recording(compress.DistillationTrainer):
        def __init__(self, *args, teacher_model=None, **kwargs):
            teachers.append(sum(p.numel() for p in teacher_model.parameters()))
            super().__init__(*args, teacher_model=teacher_model, **kwargs)

    monkeypatch.setattr(compress, "DistillationTrainer", Recording)
    out = tmp_path / "out"
    argv = [*base_argv(teacher_dir, glue_dir, out), "--stages", "distill,prune", "--student_num_layers", "1",
            "--target_sparsity", "0.5", "--recovery_teacher", "input"]  # fmt: skip
    compress.main(argv)
    distilled = AutoModelForSequenceClassification.from_pretrained(out / "1-distill")
    assert teachers[1] == sum(p.numel() for p in distilled.parameters()) < teachers[0]
    assert json.loads((out / "2-prune" / "settings.json").read_text())[-1]["recovery_teacher"] == "input"
    with pytest.raises(ValueError, match="--recovery_teacher must be one of"):
        compress.main([*argv, "--recovery_teacher", "student"])


def test_prune_to_per_layer_counts(compress, teacher_dir, glue_dir, tmp_path):
    out = tmp_path / "out"
    compress.main([*base_argv(teacher_dir, glue_dir, out), "--stages", "distill,prune", "--student_num_layers", "2",
                   "--heads_per_layer", "1,2", "--neurons_per_layer", "8"])  # fmt: skip
    config = AutoModelForSequenceClassification.from_pretrained(out / "2-prune", trust_remote_code=True).config
    heads = getattr(config, "heads_per_layer", None) or [config.num_attention_heads] * config.num_hidden_layers
    sizes = getattr(config, "intermediate_sizes", None) or [config.intermediate_size] * config.num_hidden_layers
    assert list(heads) == [1, 2] and list(sizes) == [8, 8]
    assert json.loads((out / "2-prune" / "settings.json").read_text())[-1]["heads_per_layer"] == "1,2"
