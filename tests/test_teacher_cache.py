"""Teacher logits computed once (`cache_teacher_logits`): same training as the live teacher, reused from disk only
while the data and the teacher stay the same, refused for losses that need more than logits."""

import datasets
import pytest
import torch
from transformers import BertForMaskedLM, DataCollatorWithPadding

from bertdistill import TinyBertConfig, build_student
from bertdistill.teacher_cache import TEACHER_LOGITS_COLUMN, add_teacher_logits, teacher_digest

from conftest import ForwardCounter, make_teacher, tiny_config
from test_trainer import make_trainer, state, tiny_dataset


def test_cached_logits_train_the_student_like_the_live_teacher(tmp_path, tokenizer):
    results = {}
    for cached in (False, True):
        teacher = make_teacher(tokenizer, dropout=0.0)
        trainer = make_trainer(
            tmp_path / str(cached),
            tokenizer,
            teacher=teacher,
            dropout=0.0,
            cache_teacher_logits=cached,
            num_train_epochs=3,
            max_steps=-1,
        )
        counter = ForwardCounter(teacher)
        trainer.train()
        losses = [log["loss_kd"] for log in trainer.state.log_history if "loss_kd" in log]
        results[cached] = (state(trainer.student), losses, counter.calls)
    (live, live_losses, live_calls), (cached, cached_losses, cached_calls) = results[False], results[True]
    assert live_calls == 12, "16 rows, batch 4, 3 epochs: the live teacher runs every step"
    assert cached_calls == 0, "the logits were computed in __init__, before the counter; training never runs it"
    assert cached_losses == pytest.approx(live_losses, rel=1e-4, abs=1e-6)
    for name in live:
        torch.testing.assert_close(cached[name], live[name], rtol=1e-4, atol=1e-5)


def test_logits_column_equals_the_teacher_row_by_row(tokenizer):
    teacher = make_teacher(tokenizer).eval()
    data = tiny_dataset(tokenizer, n=10)
    with_logits = add_teacher_logits(data, teacher, DataCollatorWithPadding(tokenizer), batch_size=4)
    assert with_logits.column_names == [*data.column_names, TEACHER_LOGITS_COLUMN]
    for i in range(len(data)):
        row = {k: torch.tensor([data[i][k]]) for k in ("input_ids", "attention_mask", "token_type_ids")}
        with torch.no_grad():
            expected = teacher(**row).logits[0]
        torch.testing.assert_close(torch.tensor(with_logits[i][TEACHER_LOGITS_COLUMN]), expected, atol=1e-5, rtol=1e-5)


def test_teacher_pass_batches_rows_of_similar_length(tokenizer):
    teacher = make_teacher(tokenizer).eval()
    data = tiny_dataset(tokenizer, n=10)
    lengths = [len(ids) for ids in data["input_ids"]]
    assert len(set(lengths)) > 2, "the check needs rows of several lengths"
    pad, padded = DataCollatorWithPadding(tokenizer), []

    def recording_collate(rows):
        batch = pad(rows)
        padded.append(batch["input_ids"].shape)
        return batch

    add_teacher_logits(data, teacher, recording_collate, batch_size=4)
    # Every row is seen once, and each batch is padded to the longest of 4 consecutive rows in length order.
    assert sum(rows for rows, _ in padded) == len(data)
    ordered = sorted(lengths)
    assert [width for _, width in padded] == [max(ordered[i : i + 4]) for i in range(0, len(ordered), 4)]


def test_disk_cache_is_reused_for_the_same_data_and_teacher_only(tmp_path, tokenizer):
    tiny_dataset(tokenizer, n=12).save_to_disk(tmp_path / "data")
    collate = DataCollatorWithPadding(tokenizer)

    def compute(teacher, path=tmp_path / "data"):
        counter = ForwardCounter(teacher)
        column = add_teacher_logits(datasets.load_from_disk(path), teacher, collate)[TEACHER_LOGITS_COLUMN]
        return counter.calls, column

    calls, first = compute(make_teacher(tokenizer, seed=0))
    assert calls > 0
    calls, again = compute(make_teacher(tokenizer, seed=0))
    assert calls == 0 and again == first, "same data, same weights: read back from the cache file"
    other = make_teacher(tokenizer, seed=0)
    with torch.no_grad():
        other.classifier.bias.add_(1.0)
    assert teacher_digest(other) != teacher_digest(make_teacher(tokenizer, seed=0))
    calls, changed = compute(other)
    assert calls > 0 and changed != first, "a changed teacher is run again"
    tiny_dataset(tokenizer, n=12, seed=1).save_to_disk(tmp_path / "other-data")
    calls, _ = compute(make_teacher(tokenizer, seed=0), tmp_path / "other-data")
    assert calls > 0, "other data (other labels, so another fingerprint) is run again"


def test_cache_is_refused_where_logits_are_not_enough(tmp_path, tokenizer):
    def refuse(match, **kwargs):
        with pytest.raises(ValueError, match=f"cache_teacher_logits: {match}"):
            make_trainer(tmp_path, tokenizer, cache_teacher_logits=True, **kwargs)

    reads_more = "the loss reads the teacher's hidden states or attentions, not only its logits"
    refuse(reads_more, method="pkd")
    refuse(reads_more, method="tinybert", stage="intermediate")
    refuse("DynaBertTrainer runs the teacher its own way", method="dynabert", student=make_teacher(tokenizer))
    teacher = BertForMaskedLM(tiny_config(len(tokenizer)))
    refuse("the student is a BertForMaskedLM, not a sequence classifier", teacher=teacher,
           student=build_student(teacher, num_layers=2))  # fmt: skip
    trainer = make_trainer(tmp_path, tokenizer, method="tinybert", stage="prediction", cache_teacher_logits=True)
    assert TEACHER_LOGITS_COLUMN in trainer.train_dataset.column_names


def test_tinybert_both_caches_in_the_prediction_stage_only(tmp_path):
    intermediate, prediction = TinyBertConfig(
        output_dir=str(tmp_path), stage="both", cache_teacher_logits=True
    ).split_stages()
    # The intermediate stage leaves the logits cache to bertdistill (which turns it off: that stage reads hidden
    # states); the prediction stage keeps the user's True.
    assert (intermediate.stage, intermediate.cache_teacher_logits) == ("intermediate", None)
    assert (prediction.stage, prediction.cache_teacher_logits) == ("prediction", True)
