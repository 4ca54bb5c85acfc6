"""FeatureDistillationTrainer: every intermediate-knowledge loss through the trainer, its parts trained, checkpointed
and resumed, the pre-training stages, the layer-map losses in the other methods, class-balanced batches, and the
errors a user can cause."""

import json
from collections import Counter

import pytest
import torch
from transformers import BertForSequenceClassification

from bertdistill import FeatureDistillationConfig
from bertdistill.layer_matching import parts_key
from bertdistill.losses import get_match_loss
from bertdistill.modeling import EXTRAS_WEIGHTS_NAME
from bertdistill.samplers import ClassBalancedSampler

from conftest import make_teacher, tiny_config
from test_trainer import make_trainer, state

ALL_LOSSES = ["fitnet", "at", "at:attention", "sp", "rkd", "rkd_distance", "rkd_angle", "pkt", "cc", "nst", "fsp",
              "vid", "ft", "ab"]  # fmt: skip


def narrow_student(tokenizer, layers=2):
    """A student narrower than the teacher in hidden and FFN size (with the same number of heads)."""
    config = tiny_config(len(tokenizer), layers=layers)
    config.hidden_size, config.intermediate_size = 16, 24
    torch.manual_seed(2)
    return BertForSequenceClassification(config)


def feature_trainer(tmp_path, tokenizer, student=None, **config):
    defaults = {"stage": "task", "layer_map": "1:2,2:4"}
    return make_trainer(tmp_path, tokenizer, student=student, method="feature", **{**defaults, **config})


@pytest.mark.parametrize("loss", ALL_LOSSES)
def test_every_loss_trains_student_and_parts(tmp_path, tokenizer, loss):
    name = loss.split(":")[0]
    trainer = feature_trainer(tmp_path, tokenizer, student=narrow_student(tokenizer), feature_losses=loss)
    teacher_before = state(trainer.teacher)
    wrapper = trainer.model
    extras_before = {k: v.clone() for k, v in wrapper.extras.state_dict().items()}
    student_before = state(trainer.student)
    trainer.train()
    logged = [row for row in trainer.state.log_history if "loss" in row]
    term = name if ":" not in loss else f"{name}_attention"
    assert all(f"loss_{term}" in row and "loss_kd" in row for row in logged), logged[0]
    assert all(torch.isfinite(torch.tensor(row[f"loss_{term}"])) for row in logged)
    assert any(not torch.equal(v, student_before[k]) for k, v in state(trainer.student).items())
    assert all(torch.equal(v, teacher_before[k]) for k, v in state(trainer.teacher).items())
    spec = get_match_loss(name, loss.split(":")[1] if ":" in loss else ("ffn" if name == "ab" else "hidden"))
    if spec.build_parts is not None or spec.width == "project":
        assert extras_before, "the loss has trainable parts but extras is empty"
        moved = [k for k, v in wrapper.extras.state_dict().items() if not torch.equal(v, extras_before[k])]
        assert moved, f"{loss}: no part of extras changed"
        if name == "vid":
            assert any(k.endswith("log_scale") for k in moved)
    if spec.width == "any":  # relations and maps compare any widths: no projection is made
        assert not any(k.startswith("proj") for k in extras_before)


def test_weights_and_matches_from_feature_losses(tmp_path, tokenizer):
    trainer = feature_trainer(tmp_path, tokenizer, feature_losses="rkd,sp,fsp", feature_weights="2,300,5")
    by_loss = {}
    for m in trainer.layer_map:
        by_loss.setdefault(m.loss, []).append(m)
    assert [(m.student_layer, m.teacher_layer, m.weight) for m in by_loss["rkd"]] == [(1, 2, 2.0), (2, 4, 2.0)]
    assert [m.weight for m in by_loss["sp"]] == [300.0, 300.0]
    # FSP: the flow between consecutive mapped layers, from the embeddings.
    assert [(m.student_layer, m.student_end_layer, m.teacher_layer, m.teacher_end_layer) for m in by_loss["fsp"]] == [
        (0, 1, 0, 2),
        (1, 2, 2, 4),
    ]
    assert FeatureDistillationConfig(output_dir=str(tmp_path), feature_losses="pkt,nst").weights() == [30000.0, 50.0]


def test_pretrain_stage_then_task_stage(tmp_path, tokenizer):
    """FitNet and AB train the student alone first and are left out after; FT's paraphraser is pre-trained on the
    teacher, loaded by the task stage and then stays fixed while the translator learns."""
    config = FeatureDistillationConfig(output_dir=str(tmp_path / "run"), feature_losses="fitnet,ft,ab,rkd",
                                       layer_map="1:2,2:4", max_steps=3, per_device_train_batch_size=4,
                                       learning_rate=1e-3, report_to=[], save_strategy="no", use_cpu=True,
                                       disable_tqdm=True, bf16=False, train_sampling_strategy="random")  # fmt: skip
    pretrain, task = config.split_stages()
    assert (pretrain.stage, task.stage) == ("pretrain", "task")
    assert pretrain.output_dir.endswith("run-pretrain") and task.pretrained_parts_dir == pretrain.output_dir
    assert FeatureDistillationConfig(output_dir=str(tmp_path), feature_losses="rkd").split_stages()[0].stage == "task"

    student = narrow_student(tokenizer)
    teacher = make_teacher(tokenizer)
    fields = ("output_dir", "stage", "feature_losses", "layer_map")
    first = make_trainer(tmp_path, tokenizer, teacher=teacher, student=student, method="feature",
                         **{k: getattr(pretrain, k) for k in fields})  # fmt: skip
    names = [term.name for term in first.model.loss_terms]
    assert names == ["fitnet", "ft", "ab"]  # no CE, no KD, no relation loss in the pre-training stage
    ft_key = parts_key(next(m for m in first.layer_map if m.loss == "ft"), get_match_loss("ft", "hidden"))
    paraphraser_before = {k: v.clone() for k, v in first.model.extras[ft_key].encoder.state_dict().items()}
    translator_before = {k: v.clone() for k, v in first.model.extras[ft_key].translator.state_dict().items()}
    first.train()
    first.save_model()
    paraphraser = first.model.extras[ft_key].encoder.state_dict()
    assert any(not torch.equal(v, paraphraser_before[k]) for k, v in paraphraser.items())
    # The pre-training stage trains the paraphraser on the teacher only: the translator gets no gradient.
    assert all(
        torch.equal(v, translator_before[k]) for k, v in first.model.extras[ft_key].translator.state_dict().items()
    )
    assert (tmp_path / "run-pretrain" / EXTRAS_WEIGHTS_NAME).is_file()

    second = make_trainer(tmp_path, tokenizer, teacher=teacher, student=first.student, method="feature",
                          **{k: getattr(task, k) for k in ("output_dir", "stage", "feature_losses", "layer_map",
                                                           "pretrained_parts_dir")})  # fmt: skip
    assert [term.name for term in second.model.loss_terms] == ["ce", "kd", "ft", "rkd"]
    loaded = second.model.extras[ft_key].encoder.state_dict()
    assert all(torch.equal(v, paraphraser[k]) for k, v in loaded.items())
    translator = {k: v.clone() for k, v in second.model.extras[ft_key].translator.state_dict().items()}
    second.train()
    assert all(torch.equal(v, paraphraser[k]) for k, v in second.model.extras[ft_key].encoder.state_dict().items())
    assert any(
        not torch.equal(v, translator[k]) for k, v in second.model.extras[ft_key].translator.state_dict().items()
    )


def test_task_stage_without_pretraining_trains_ft_paraphraser_alongside(tmp_path, tokenizer):
    trainer = feature_trainer(tmp_path, tokenizer, feature_losses="ft,fitnet")
    assert [term.name for term in trainer.model.loss_terms] == ["ce", "kd", "ft", "fitnet"]
    key = parts_key(trainer.layer_map[0], get_match_loss("ft", "hidden"))
    before = {k: v.clone() for k, v in trainer.model.extras[key].decoder.state_dict().items()}
    trainer.train()
    assert any(not torch.equal(v, before[k]) for k, v in trainer.model.extras[key].decoder.state_dict().items())


def test_missing_pretrained_parts_is_an_error(tmp_path, tokenizer):
    with pytest.raises(FileNotFoundError, match="run the pre-training stage first"):
        feature_trainer(tmp_path, tokenizer, feature_losses="ft", pretrained_parts_dir=str(tmp_path))


def test_checkpoint_with_parts_resumes(tmp_path, tokenizer):
    common = {"feature_losses": "vid,rkd", "max_steps": 4, "save_strategy": "steps", "save_steps": 2}
    full = feature_trainer(tmp_path / "full", tokenizer, student=narrow_student(tokenizer), **common)
    full.train()
    resumed = feature_trainer(tmp_path / "full", tokenizer, student=narrow_student(tokenizer), **common)
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-2"))
    for key, value in full.model.extras.state_dict().items():
        assert torch.allclose(value, resumed.model.extras.state_dict()[key], atol=1e-6), key
    for key, value in state(full.student).items():
        assert torch.allclose(value, state(resumed.student)[key], atol=1e-6), key


def test_other_methods_take_feature_losses_in_a_json_layer_map(tmp_path, tokenizer):
    layer_map = json.dumps([{"student_layer": 1, "teacher_layer": 2, "loss": "vid"},
                            {"student_layer": 2, "teacher_layer": 4, "feature": "attention", "loss": "at"},
                            {"student_layer": 2, "teacher_layer": 4, "feature": "ffn", "loss": "ab"}])  # fmt: skip
    for method in ("pkd", "distilbert"):
        trainer = make_trainer(tmp_path / method, tokenizer, method=method, layer_map=layer_map,
                               student=narrow_student(tokenizer))  # fmt: skip
        keys = set(trainer.model.extras)
        assert {"vid_hidden_1_2", "ab_ffn_2_4"} <= keys, keys
        before = {k: v.clone() for k, v in trainer.model.extras.state_dict().items()}
        trainer.train()
        assert all(not torch.equal(v, before[k]) for k, v in trainer.model.extras.state_dict().items()
                   if k.startswith(("vid", "ab")) and k.endswith("weight"))  # fmt: skip
    tinybert = make_trainer(tmp_path / "tinybert", tokenizer, method="tinybert",
                            layer_map='[{"student_layer": 1, "teacher_layer": 2, "loss": "rkd"}]')  # fmt: skip
    tinybert.train()
    assert "loss_hidden" in tinybert.state.log_history[0]


def test_class_balanced_batches(tmp_path, tokenizer):
    labels = [0] * 30 + [1] * 6 + [2] * 12
    order = list(ClassBalancedSampler(labels, batch_size=6, seed=1))
    assert len(order) == len(labels)
    for start in range(0, len(order) - 5, 6):
        assert Counter(labels[i] for i in order[start : start + 6]) == {0: 2, 1: 2, 2: 2}
    assert list(ClassBalancedSampler(labels, 6, seed=1)) == order != list(ClassBalancedSampler(labels, 6, seed=2))
    with pytest.raises(ValueError, match="cannot hold all 3 classes"):
        ClassBalancedSampler(labels, batch_size=2)
    with pytest.raises(ValueError, match="class_balanced_batches replaces the training sampler"):
        feature_trainer(tmp_path, tokenizer, feature_losses="cc", class_balanced_batches=True)  # "random" is set
    trainer = feature_trainer(tmp_path, tokenizer, feature_losses="cc", class_balanced_batches=True,
                              train_sampling_strategy=None)  # fmt: skip
    batch = next(iter(trainer.get_train_dataloader()))
    assert sorted(Counter(batch["labels"].tolist()).values()) == [2, 2]
    assert trainer.speed_levers["train_sampling_strategy"].value == "class_balanced"
    with pytest.raises(ValueError, match="needs a classification task"):
        feature_trainer(tmp_path, tokenizer, feature_losses="cc", class_balanced_batches=True, num_labels=1,
                        train_sampling_strategy=None)  # fmt: skip


def test_feature_errors(tmp_path, tokenizer):
    with pytest.raises(ValueError, match="Unknown feature loss 'rdk'"):
        FeatureDistillationConfig(output_dir=str(tmp_path), feature_losses="rdk")
    with pytest.raises(ValueError, match="needs losses"):
        FeatureDistillationConfig(output_dir=str(tmp_path))
    with pytest.raises(ValueError, match="gives 1 weights for 2 feature losses"):
        FeatureDistillationConfig(output_dir=str(tmp_path), feature_losses="rkd,sp", feature_weights="1")
    with pytest.raises(ValueError, match="Unknown loss 'sp' for attention matches"):
        FeatureDistillationConfig(output_dir=str(tmp_path), feature_losses="sp:attention")
    with pytest.raises(ValueError, match="Unknown loss 'rkd' for attention matches"):
        feature_trainer(tmp_path, tokenizer, layer_map='[{"student_layer": 1, "teacher_layer": 2, '
                        '"feature": "attention", "loss": "rkd"}]')  # fmt: skip
    with pytest.raises(ValueError, match="reads a pair of layers"):
        feature_trainer(tmp_path, tokenizer, layer_map='[{"student_layer": 1, "teacher_layer": 2, "loss": "fsp"}]')
    with pytest.raises(ValueError, match="reads one layer"):
        feature_trainer(tmp_path, tokenizer, layer_map='[{"student_layer": 1, "teacher_layer": 2, "loss": "sp", '
                        '"student_end_layer": 2, "teacher_end_layer": 4}]')  # fmt: skip
    with pytest.raises(ValueError, match="needs batches of at least 2 rows"):
        feature_trainer(tmp_path, tokenizer, feature_losses="rkd", per_device_train_batch_size=1)
    with pytest.raises(ValueError, match="none of the losses .* pre-trains anything"):
        feature_trainer(tmp_path, tokenizer, feature_losses="rkd", stage="pretrain")
    with pytest.raises(ValueError, match="maps the widths with its own parts; remove proj"):
        feature_trainer(tmp_path, tokenizer, layer_map='[{"student_layer": 1, "teacher_layer": 2, "loss": "vid", '
                        '"proj": true}]')  # fmt: skip
    with pytest.raises(ValueError, match="name no loss"):
        feature_trainer(tmp_path, tokenizer, layer_map='[{"student_layer": 1, "teacher_layer": 2, "loss": "sp"}, '
                        '{"student_layer": 2, "teacher_layer": 4}]')  # fmt: skip


def test_json_layer_map_with_short_names_as_in_the_docs(tmp_path, tokenizer):
    from bertdistill import resolve_layer_map

    (match,) = resolve_layer_map(
        '[{"student": 2, "teacher": 4, "feature": "hidden", "loss": "vid", "weight": 1}]', 4, 2
    )
    assert (match.student_layer, match.teacher_layer, match.loss, match.weight) == (2, 4, "vid", 1)
    with pytest.raises(ValueError, match="gives both 'student' and 'student_layer'"):
        resolve_layer_map('[{"student": 2, "student_layer": 2, "teacher": 4}]', 4, 2)


def test_at_norm_is_the_papers_unsquared_norm():
    from bertdistill.losses import at_norm_loss

    student = torch.tensor([[[1.0, 2.0], [0.5, -1.0], [3.0, 0.0]]], dtype=torch.float64)
    teacher = torch.tensor([[[0.0, 1.0, 1.0], [2.0, 0.0, 0.0], [9.0, 9.0, 9.0]]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 0]])
    q_s = [1 + 4, 0.25 + 1]
    q_t = [0 + 1 + 1, 4 + 0 + 0]
    n_s, n_t = sum(v * v for v in q_s) ** 0.5, sum(v * v for v in q_t) ** 0.5
    expected = sum((a / n_s - b / n_t) ** 2 for a, b in zip(q_s, q_t)) ** 0.5
    assert at_norm_loss(student, teacher, mask).item() == pytest.approx(expected, rel=1e-6)


def test_teacher_caches_with_feature_losses(tmp_path, tokenizer):
    """FFN pre-activations are in no teacher cache: AB runs the live teacher (and says why); hidden-state losses over
    several epochs cache the mapped layers."""
    levers = {"cache_teacher_logits": None, "cache_teacher_outputs": None, "teacher_cache_dir": str(tmp_path / "c")}
    ab = feature_trainer(tmp_path / "ab", tokenizer, feature_losses="ab", **levers)
    for lever in ("cache_teacher_outputs", "cache_teacher_logits"):
        assert ab.speed_levers[lever].value is False
    assert "FFN pre-activations" in ab.speed_levers["cache_teacher_outputs"].reason
    ab.train()
    rkd = feature_trainer(tmp_path / "rkd", tokenizer, feature_losses="rkd,fsp", num_train_epochs=2, max_steps=-1,
                          **levers)  # fmt: skip
    assert rkd.speed_levers["cache_teacher_outputs"].value is True
    assert rkd.model.teacher_hidden_layers == (0, 2, 4)  # FSP's flow starts at the embeddings
    rkd.train()


def test_comparison_report_from_result_files(tmp_path, glue_dir, monkeypatch):
    """compare_feature_losses.py rebuilds its report from result files: paired intervals against kd and finetune,
    verdicts, the final term sizes, and the runs still missing."""
    from bertdistill.results import ResultStore
    from glue_tasks import load_glue_split

    from conftest import load_script

    compare = load_script("checks/compare_feature_losses")
    compare.BOOTSTRAP_RESAMPLES = 200  # the intervals here are far from 0; the report's own use 2000
    labels = list(load_glue_split("mrpc", "validation", glue_dir)["label"])
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    (teacher / "config.json").write_text("{}")
    store = ResultStore(tmp_path / "results")
    flipped = [1 - y for y in labels]

    def record(predictions, losses=None):
        return {"metric": "f1", "score": 0.0, "dev_predictions": predictions, "wall_time_s": 1, "machine": "test",
                "teacher_score": 0.9, "final_losses": losses or {}}  # fmt: skip

    for seed in ("1", "2"):
        store.save("mrpc", "kd", seed, record(labels[:200] + flipped[200:]))
        store.save("mrpc", "finetune", seed, record(flipped))
        store.save("mrpc", "feature-rkd", seed, record(labels, {"loss_rkd": 0.5, "loss_kd": 0.25}))
        store.save("mrpc", "feature-cc", seed, record(labels[:200] + flipped[200:]))  # KD's own predictions
    report = tmp_path / "report.md"
    summaries = compare.main(["--teachers", f"mrpc={teacher}", "--tasks", "mrpc", "--seeds", "1", "2", "--glue_dir",
                              str(glue_dir), "--results_dir", str(tmp_path / "results"), "--report", str(report),
                              "--report_only"])  # fmt: skip
    rows = {row["run"]: row for row in summaries[0]["rows"]}
    assert rows["feature-rkd"]["vs_kd"]["low"] > 0 and rows["feature-rkd"]["vs_kd"]["seeds"] == ["1", "2"]
    # the means are the saved predictions' F1 (the rows the intervals resample), not the recorded training-time 0.0
    assert rows["feature-rkd"]["mean"] == 1.0 and rows["finetune"]["mean"] == 0.0 and 0 < rows["kd"]["mean"] < 1
    assert rows["kd"]["vs_finetune"]["low"] > 0 and rows["finetune"]["vs_kd"]["high"] < 0
    text = report.read_text()
    assert "| rkd | +" in text and "better (2) | 1 / 0 / 0 |" in text and "0.5 / 0.25" in text
    assert "| cc | +0.00 =, tiny (2) | 0 / 1 / 0 |" in text
    assert "- mrpc: 18 of 26 runs (seeds 1, 2)" in text
    assert "Warning" not in text and summaries[0]["teacher_scores"] == [0.9]
    assert "![Each loss's difference from kd" in text and report.with_suffix(".png").stat().st_size > 1000

    # a run distilled from another teacher (a re-trained one that came out different) is flagged, not mixed silently
    store.save("mrpc", "kd", "3", {**record(labels), "teacher_score": 0.8})
    compare.main(["--tasks", "mrpc", "--seeds", "1", "2", "3", "--glue_dir", str(glue_dir), "--results_dir",
                  str(tmp_path / "results"), "--report", str(report), "--report_only"])  # fmt: skip
    assert (
        "**Warning**: these runs were distilled from teachers of different scores ([0.8, 0.9])" in report.read_text()
    )

    # the intervals are kept next to the results: a new process rebuilds the report without computing any again
    assert (tmp_path / "results" / "bootstrap_intervals.json").is_file()
    compare._INTERVALS.clear()

    def no_bootstrap(*args, **kwargs):
        raise AssertionError("an interval was computed again")

    monkeypatch.setattr(compare, "paired_bootstrap", no_bootstrap)
    again = compare.main(["--tasks", "mrpc", "--seeds", "1", "2", "3", "--glue_dir", str(glue_dir), "--results_dir",
                          str(tmp_path / "results"), "--report", str(report), "--report_only"])  # fmt: skip
    assert {r["run"]: r for r in again[0]["rows"]}["feature-rkd"]["vs_kd"]["low"] > 0


def test_a_half_written_interval_file_is_recomputed_not_fatal(tmp_path, capsys):
    from conftest import load_script

    compare = load_script("checks/compare_feature_losses")
    (tmp_path / "bootstrap_intervals.json").write_text('{"mrpc/2000/ab": {"low"')  # killed mid-write
    compare.use_interval_file(tmp_path / "bootstrap_intervals.json")
    assert compare._INTERVALS == {} and "is not valid JSON" in capsys.readouterr().out
