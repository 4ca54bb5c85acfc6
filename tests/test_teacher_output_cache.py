"""Intermediate teacher outputs computed once (`cache_teacher_outputs`): the cached teacher gives the loss and the
trained student of the live one (float16 tolerance), its batches are shaped like a live teacher's, the cache is
reused for the same data and teacher only, and runs that cannot use it are refused with the reason."""

import datasets
import numpy as np
import pytest
import torch
from transformers import BertForMaskedLM, BertForSequenceClassification

from bertdistill import build_student
from bertdistill.teacher_output_cache import TEACHER_ROW_COLUMN, TeacherOutputCache

from conftest import ForwardCounter, make_teacher, tiny_config
from test_trainer import make_trainer, state, tiny_dataset


def narrow_student(tokenizer, layers=2, hidden=16):
    """A random-init student narrower than the teacher (TinyBERT's case: projections, losses far from 0)."""
    config = tiny_config(len(tokenizer), layers=layers, dropout=0.0)
    config.hidden_size, config.intermediate_size = hidden, 2 * hidden
    torch.manual_seed(2)
    return BertForSequenceClassification(config)


def cached_and_live(tmp_path, tokenizer, method, **config):
    """Two trainers on the same teacher, student and data: one reading the cache, one running the teacher."""
    trainers = []
    for cached in (True, False):
        teacher = make_teacher(tokenizer, dropout=0.0)
        student = narrow_student(tokenizer) if method == "tinybert" else None
        trainers.append(make_trainer(
            tmp_path / f"{method}-{cached}", tokenizer, method=method, teacher=teacher, student=student, dropout=0.0,
            cache_teacher_outputs=cached, teacher_cache_dir=str(tmp_path / "cache"), **config,
        ))  # fmt: skip
    return trainers


@pytest.mark.parametrize("method, config", [("tinybert", {"stage": "intermediate"}), ("pkd", {}),
                                            ("distilbert", {})])  # fmt: skip
def test_cached_outputs_give_the_live_loss_and_structure(tmp_path, tokenizer, method, config):
    cached, live = cached_and_live(tmp_path, tokenizer, method, **config)
    assert TEACHER_ROW_COLUMN in cached.train_dataset.column_names
    assert cached.speed_levers["cache_teacher_outputs"].source == "user"
    wrapper = cached.accelerator.unwrap_model(cached.model)
    kept_hidden = set(wrapper.teacher_hidden_layers)
    batch = cached._prepare_inputs(next(iter(cached.get_train_dataloader())))
    rows = batch.pop(TEACHER_ROW_COLUMN)
    from_cache = cached._teacher_outputs(wrapper, batch, rows)
    from_teacher = cached._teacher_outputs(wrapper, batch)
    # Shaped like the live teacher's: hidden states indexed as output_hidden_states, attentions in recorded order.
    assert len(from_cache.hidden_states) == len(from_teacher.hidden_states)
    for layer, (c, t) in enumerate(zip(from_cache.hidden_states, from_teacher.hidden_states)):
        if layer in kept_hidden:
            mask = batch["attention_mask"].bool()
            torch.testing.assert_close(c[mask], t[mask], atol=2e-3, rtol=2e-3)  # float16 on disk
        else:
            assert c is None
    if wrapper.teacher_attention_layers:
        assert len(from_cache.attentions) == len(from_teacher.attentions) == len(wrapper.teacher_attention_layers)
        # Real query x real key positions; the live teacher's padded query rows hold scores no loss reads, the
        # cache's zeros.
        real = batch["attention_mask"].bool()
        pairs = real[:, None, :, None] & real[:, None, None, :]
        for c, t in zip(from_cache.attentions, from_teacher.attentions):
            torch.testing.assert_close(c[pairs.expand_as(c)], t[pairs.expand_as(t)], atol=2e-3, rtol=2e-3)
    else:
        assert from_cache.attentions is None
    torch.testing.assert_close(from_cache.logits, from_teacher.logits)
    cached.model.train()
    with torch.no_grad():
        a = cached.model(**batch, teacher_outputs=from_cache, distill=True)
        b = cached.model(**batch, teacher_outputs=from_teacher, distill=True)
    for name, value in b.loss_components.items():
        assert float(a.loss_components[name]) == pytest.approx(float(value), rel=2e-3, abs=1e-6), name


def test_cached_teacher_trains_the_student_like_the_live_one(tmp_path, tokenizer):
    cached, live = cached_and_live(tmp_path, tokenizer, "tinybert", stage="intermediate", max_steps=-1,
                                   num_train_epochs=3)  # fmt: skip
    counter = ForwardCounter(cached.teacher)
    initial = state(live.model)
    cached.train()
    live.train()
    assert counter.calls == 0, "the cache was written in __init__; training never runs the teacher"
    losses = {name: [log["loss_hidden"] for log in t.state.log_history if "loss_hidden" in log]
              for name, t in (("cached", cached), ("live", live))}  # fmt: skip
    assert len(losses["cached"]) == 12  # 16 rows, batch 4, 3 epochs
    assert losses["cached"] == pytest.approx(losses["live"], rel=5e-3)
    trained_cached, trained_live = state(cached.model), state(live.model)
    moved = [k for k, v in trained_live.items() if not torch.equal(v, initial[k])]
    assert any(k.startswith("student.bert.encoder") for k in moved) and any(k.startswith("extras.") for k in moved)
    # Within one Adam step (lr 1e-3) of each other: float16 targets nudge a few near-zero gradients.
    for name, value in trained_live.items():
        torch.testing.assert_close(trained_cached[name], value, atol=1e-3, rtol=1e-2)


def test_cache_is_reused_for_same_data_and_teacher_and_recomputed_otherwise(tmp_path, tokenizer):
    cache_dir = tmp_path / "cache"

    def build(teacher, data_seed=0, n=16):
        student = narrow_student(tokenizer)
        counter = ForwardCounter(teacher)
        trainer = make_trainer(tmp_path / "run", tokenizer, method="tinybert", stage="intermediate", teacher=teacher,
                               student=student, cache_teacher_outputs=True, teacher_cache_dir=str(cache_dir),
                               n=n)  # fmt: skip
        return trainer, counter.calls

    first, calls = build(make_teacher(tokenizer))
    assert calls > 0
    folders = sorted(p.name for p in cache_dir.iterdir())
    assert len(folders) == 1 and not any(".tmp" in name for name in folders)
    again, calls = build(make_teacher(tokenizer))
    assert calls == 0, "same rows, same teacher: read back from disk"
    assert again.teacher_output_cache.folder == first.teacher_output_cache.folder
    changed = make_teacher(tokenizer)
    with torch.no_grad():
        changed.bert.encoder.layer[0].output.dense.bias.add_(0.1)
    _, calls = build(changed)
    assert calls > 0, "a changed teacher is run again"
    _, calls = build(make_teacher(tokenizer), n=12)
    assert calls > 0, "other rows are run again"
    assert len(list(cache_dir.iterdir())) == 3


def test_auto_cache_needs_a_second_pass_or_an_existing_cache(tmp_path, tokenizer):
    def trainer(**config):
        return make_trainer(tmp_path / "run", tokenizer, method="pkd", cache_teacher_outputs=None,
                            cache_teacher_logits=None, teacher_cache_dir=str(tmp_path / "cache"),
                            **config)  # fmt: skip

    once = trainer(max_steps=4)  # 4 steps of 4 rows over 16 rows: one pass
    assert once.speed_levers["cache_teacher_outputs"].value is False
    assert "at most once" in once.speed_levers["cache_teacher_outputs"].reason
    twice = trainer(max_steps=-1, num_train_epochs=2)
    assert twice.speed_levers["cache_teacher_outputs"].value is True
    assert twice.speed_levers["cache_teacher_outputs"].source == "auto"
    assert twice.speed_levers["cache_teacher_logits"].reason == "cache_teacher_outputs holds the logits too"
    reused = trainer(max_steps=4)  # one pass, but the cache is there now
    assert reused.speed_levers["cache_teacher_outputs"].value is True


def test_refusals_name_the_reason(tmp_path, tokenizer):
    def refuse(match, **kwargs):
        with pytest.raises(ValueError, match=match):
            make_trainer(tmp_path / "run", tokenizer, teacher_cache_dir=str(tmp_path / "cache"), **kwargs)

    refuse("cache_teacher_outputs: .*over teacher_cache_max_gb 1e-06 GB", method="pkd", cache_teacher_outputs=True,
           teacher_cache_max_gb=1e-6)  # fmt: skip
    assert not (tmp_path / "cache").exists(), "refused before the teacher ran"
    refuse("cache_teacher_outputs: DynaBertTrainer runs the teacher its own way", method="dynabert",
           student=make_teacher(tokenizer), cache_teacher_outputs=True)  # fmt: skip
    refuse("cache_teacher_outputs: the loss reads only the teacher's logits", cache_teacher_outputs=True)
    refuse("cache_teacher_outputs: cache_teacher_logits was asked for", method="pkd", cache_teacher_outputs=True,
           cache_teacher_logits=True)  # fmt: skip
    teacher = BertForMaskedLM(tiny_config(len(tokenizer)))
    refuse("cache_teacher_outputs: the student is a BertForMaskedLM", method="distilbert", teacher=teacher,
           student=build_student(teacher, num_layers=2), cache_teacher_outputs=True)  # fmt: skip


def rebuilt(trainer, train_dataset, **changes):
    """`trainer`'s models and config (with `changes`) on another training set."""
    return type(trainer)(model=trainer.student, teacher_model=trainer.teacher, train_dataset=train_dataset,
                         args=trainer.args.replaced(**changes), processing_class=trainer.processing_class)  # fmt: skip


def test_iterable_training_set_is_refused(tmp_path, tokenizer):
    trainer = make_trainer(tmp_path, tokenizer, method="pkd")
    iterable = tiny_dataset(tokenizer).to_iterable_dataset()
    with pytest.raises(ValueError, match="cache_teacher_outputs: the training set is not a datasets.Dataset but an "
                                         "IterableDataset"):  # fmt: skip
        rebuilt(trainer, iterable, cache_teacher_outputs=True)
    assert rebuilt(trainer, iterable, cache_teacher_outputs=None).speed_levers["cache_teacher_outputs"].value is False


def test_cache_files_are_float16_rows_unpadded(tmp_path, tokenizer):
    trainer = make_trainer(tmp_path, tokenizer, method="tinybert", stage="intermediate",
                           student=narrow_student(tokenizer), cache_teacher_outputs=True,
                           teacher_cache_dir=str(tmp_path / "cache"))  # fmt: skip
    cache = TeacherOutputCache(trainer.teacher_output_cache.folder)
    lengths = [len(ids) for ids in trainer.train_dataset["input_ids"]]
    assert cache.lengths.tolist() == lengths
    spec = cache.spec
    assert cache.hidden.dtype == np.float16 and cache.attention.dtype == np.float16
    assert cache.hidden.size == sum(lengths) * len(spec.hidden_layers) * spec.hidden_size
    assert cache.attention.size == sum(n * n for n in lengths) * len(spec.attention_layers) * spec.num_heads
    assert spec.hidden_layers == (0, 2, 4) and spec.attention_layers == (2, 4)  # 4 -> 2 layers, uniform
    row = {k: torch.tensor([trainer.train_dataset[3][k]]) for k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad():
        live = trainer.teacher(**row, output_hidden_states=True)
    expected = torch.stack([live.hidden_states[layer][0] for layer in spec.hidden_layers]).half()
    torch.testing.assert_close(torch.from_numpy(np.array(cache.row_hidden(3))), expected)


def test_datasets_disk_cache_folder_is_the_default(tmp_path, tokenizer):
    tiny_dataset(tokenizer).save_to_disk(tmp_path / "data")
    data = datasets.load_from_disk(tmp_path / "data")
    trainer = rebuilt(make_trainer(tmp_path / "run", tokenizer, method="pkd"), data, cache_teacher_outputs=True)
    assert trainer.teacher_output_cache.folder.parent == tmp_path / "data" / "bertdistill_teacher_outputs"
    # A training set taken from a trainer (it has a teacher_row column already) finds the same cache.
    again = rebuilt(trainer, trainer.train_dataset, cache_teacher_outputs=True)
    assert again.teacher_output_cache.folder == trainer.teacher_output_cache.folder
