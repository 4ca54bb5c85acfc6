"""Fast by default: the levers bertdistill picks itself (length-grouped batches, bf16 where the hardware runs it
natively, cached teacher logits for logit-only losses), each switched off by the user's explicit choice and recorded
(source and reason) in the log, train_results.json and the model card."""

import json
import logging

import numpy as np
import pytest
import torch

from bertdistill import DistillationTrainingConfig, TinyBertConfig, build_student, get_method, speed_levers
from bertdistill.speed_levers import LeverChoice, cpu_bf16_instructions, cpu_flags, native_bf16
from bertdistill.teacher_cache import TEACHER_LOGITS_COLUMN

from conftest import make_teacher
from test_trainer import tiny_dataset

INTEL_AMX = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f amx_tile amx_bf16 avx512_bf16\n"
AMD_ZEN4 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n"
OLD_XEON = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f\n"


def fake_cpu(monkeypatch, tmp_path, cpuinfo: str | None):
    """Make `/proc/cpuinfo` read `cpuinfo` (`None`: no such file), on a machine with no accelerator."""
    path = tmp_path / "cpuinfo"
    if cpuinfo is not None:
        path.write_text(cpuinfo)
    original = speed_levers.cpu_flags
    monkeypatch.setattr(speed_levers, "cpu_flags", lambda cpuinfo=path: original(cpuinfo))
    monkeypatch.setattr(speed_levers, "accelerator_type", lambda: None)


@pytest.mark.parametrize(
    "cpuinfo, expected",
    [(INTEL_AMX, "AMX-BF16"), (AMD_ZEN4, "AVX512-BF16"), (OLD_XEON, None)],
)
def test_cpu_bf16_instructions_are_read_from_the_cpu_flags(tmp_path, cpuinfo, expected):
    (tmp_path / "cpuinfo").write_text(cpuinfo)
    assert cpu_bf16_instructions(cpu_flags(tmp_path / "cpuinfo")) == expected


def test_without_cpuinfo_torch_probe_answers(tmp_path, monkeypatch):
    assert cpu_flags(tmp_path / "absent") is None
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    fake_cpu(monkeypatch, tmp_path, None)
    assert native_bf16() == (True, "CPU with AVX512-BF16")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    assert native_bf16()[0] is False


def test_native_bf16_on_cuda_asks_for_native_support_only(monkeypatch):
    asked = {}

    def supported(including_emulation=True):
        asked["including_emulation"] = including_emulation
        return False  # e.g. a T4: bf16 emulated, slower than fp16/fp32

    monkeypatch.setattr(speed_levers, "accelerator_type", lambda: "cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", supported)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla T4")
    assert native_bf16() == (False, "CUDA Tesla T4 has no native bf16")
    assert asked == {"including_emulation": False}
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: not including_emulation)
    assert native_bf16()[0] is True
    monkeypatch.setattr(speed_levers, "accelerator_type", lambda: "mps")
    assert native_bf16() == (False, "native bf16 is not detected on mps")


@pytest.mark.parametrize("cpuinfo, expected", [(INTEL_AMX, True), (OLD_XEON, False)])
def test_config_turns_bf16_on_where_detected_and_respects_the_user(tmp_path, monkeypatch, cpuinfo, expected):
    fake_cpu(monkeypatch, tmp_path, cpuinfo)
    config = DistillationTrainingConfig(output_dir=str(tmp_path), report_to=[])
    choice = config.lever_choices()["bf16"]
    assert (config.bf16, choice.source) == (expected, "auto")
    assert config.mixed_precision == ("bf16" if expected else "no")
    assert choice.reason == ("CPU with AMX-BF16" if expected else "CPU without AMX-BF16 or AVX512-BF16 (bf16 would "
                                                                  "be emulated)")  # fmt: skip
    off = DistillationTrainingConfig(output_dir=str(tmp_path), report_to=[], bf16=False)
    assert (off.bf16, off.mixed_precision, off.lever_choices()["bf16"]) == (False, "no", LeverChoice(False, "user"))
    fp16_asked = DistillationTrainingConfig(output_dir=str(tmp_path), report_to=[], fp16=True, use_cpu=True)
    assert fp16_asked.lever_choices()["bf16"] == LeverChoice(False, "auto", "fp16 was asked for")


def test_length_grouping_is_the_default_and_random_turns_it_off(tmp_path):
    config = DistillationTrainingConfig(output_dir=str(tmp_path), report_to=[], bf16=False)
    assert config.train_sampling_strategy == "group_by_length"
    assert config.lever_choices()["train_sampling_strategy"].source == "default"
    random = DistillationTrainingConfig(output_dir=str(tmp_path), report_to=[], train_sampling_strategy="random")
    assert random.lever_choices()["train_sampling_strategy"] == LeverChoice("random", "user")


def test_stages_choose_again_instead_of_inheriting_a_choice_as_the_users(tmp_path, monkeypatch):
    fake_cpu(monkeypatch, tmp_path, INTEL_AMX)
    intermediate, prediction = TinyBertConfig(output_dir=str(tmp_path), stage="both", report_to=[]).split_stages()
    for stage in (intermediate, prediction):
        assert stage.bf16 and stage.lever_choices()["bf16"].source == "auto"
        assert stage.lever_choices()["train_sampling_strategy"].source == "default"
    explicit = TinyBertConfig(output_dir=str(tmp_path), stage="both", report_to=[], bf16=False).split_stages()
    assert [stage.lever_choices()["bf16"] for stage in explicit] == [LeverChoice(False, "user")] * 2


def test_script_parser_tells_unset_from_false(tmp_path):
    from transformers import HfArgumentParser

    parser = HfArgumentParser(DistillationTrainingConfig)
    (unset,) = parser.parse_args_into_dataclasses(["--output_dir", str(tmp_path), "--report_to", "none"])
    (off,) = parser.parse_args_into_dataclasses(
        ["--output_dir", str(tmp_path), "--report_to", "none", "--bf16", "false", "--cache_teacher_logits", "false",
         "--train_sampling_strategy", "random"]
    )  # fmt: skip
    assert unset.lever_choices()["bf16"].source == "auto"
    assert {name: c.source for name, c in off.lever_choices().items()} == {
        "bf16": "user",
        "train_sampling_strategy": "user",
    }
    assert (off.bf16, off.cache_teacher_logits, off.train_sampling_strategy) == (False, False, "random")
    # A bare flag means true, as for transformers' own boolean flags.
    (bare,) = parser.parse_args_into_dataclasses(
        ["--output_dir", str(tmp_path), "--report_to", "none", "--bf16", "--cache_teacher_outputs", "--use_cpu"]
    )
    assert (bare.bf16, bare.cache_teacher_outputs, bare.lever_choices()["bf16"].source) == (True, True, "user")
    assert bare.cache_teacher_logits is None


def default_trainer(tmp_path, tokenizer, method="kd", n=16, **config):
    """A trainer whose levers are left to bertdistill (bf16 off: numerics of a tiny model are not the point)."""
    teacher = make_teacher(tokenizer)
    torch.manual_seed(1)
    student = build_student(teacher, num_layers=2)
    method = get_method(method)
    args = method.config_class(output_dir=str(tmp_path), per_device_train_batch_size=4, report_to=[],
                               disable_tqdm=True, save_strategy="no", use_cpu=True, bf16=False, **config)  # fmt: skip
    data = tiny_dataset(tokenizer, n=n)
    return method.trainer_class(model=student, teacher_model=teacher, args=args, train_dataset=data,
                                eval_dataset=data, processing_class=tokenizer)  # fmt: skip


def test_logit_kd_caches_teacher_logits_by_default(tmp_path, tokenizer, caplog):
    with caplog.at_level(logging.INFO, logger="bertdistill.speed_levers"):
        trainer = default_trainer(tmp_path, tokenizer)
    assert TEACHER_LOGITS_COLUMN in trainer.train_dataset.column_names
    assert trainer.speed_levers["cache_teacher_logits"] == LeverChoice(
        True, "auto", "logit-only loss: the teacher runs once instead of every epoch"
    )
    assert "Speed lever cache_teacher_logits = True (auto" in caplog.text
    assert "Speed lever train_sampling_strategy = group_by_length (default" in caplog.text
    off = default_trainer(tmp_path, tokenizer, cache_teacher_logits=False)
    assert TEACHER_LOGITS_COLUMN not in off.train_dataset.column_names
    pkd = default_trainer(tmp_path, tokenizer, method="pkd", cache_teacher_outputs=False)
    assert pkd.speed_levers["cache_teacher_logits"].value is False
    assert "hidden states or attentions" in pkd.speed_levers["cache_teacher_logits"].reason


def test_levers_are_in_train_results_and_model_card(tmp_path, tokenizer):
    trainer = default_trainer(tmp_path, tokenizer, max_steps=2)
    result = trainer.train()
    trainer.save_metrics("train", result.metrics, combined=False)
    levers = json.loads((tmp_path / "train_results.json").read_text())["speed_levers"]
    assert levers["train_sampling_strategy"] == {"value": "group_by_length", "source": "default",
                                                 "reason": "batches of similar lengths pad less"}  # fmt: skip
    assert levers["bf16"] == {"value": False, "source": "user", "reason": ""}
    assert levers["cache_teacher_logits"]["value"] is True and levers["cache_teacher_logits"]["source"] == "auto"
    assert levers["cache_teacher_outputs"]["value"] is False
    saved = json.loads((tmp_path / "train_results.json").read_text())
    assert saved["teacher_cache_s"] > 0, "the one teacher pass that wrote the logits column is timed"
    off = default_trainer(tmp_path / "off", tokenizer, max_steps=2, cache_teacher_logits=False)
    assert off.train().metrics["teacher_cache_s"] < saved["teacher_cache_s"]
    trainer.create_model_card()
    card = (tmp_path / "README.md").read_text()
    assert "| train_sampling_strategy | group_by_length (default: batches of similar lengths pad less) |" in card
    assert "| bf16 | False (user) |" in card
    assert "| cache_teacher_logits | True (auto: logit-only loss" in card


def test_evaluation_keeps_the_dataset_order_under_length_grouping(tmp_path, tokenizer):
    trainer = default_trainer(tmp_path, tokenizer, n=16, per_device_eval_batch_size=4)
    assert trainer.args.train_sampling_strategy == "group_by_length"
    data = tiny_dataset(tokenizer, n=16)
    predictions = trainer.predict(data).predictions
    student = trainer.student.eval()
    with torch.no_grad():
        expected = [
            student(**{k: torch.tensor([data[i][k]]) for k in ("input_ids", "attention_mask", "token_type_ids")})
            .logits[0]
            .numpy()
            for i in range(len(data))
        ]
    torch.testing.assert_close(torch.tensor(predictions), torch.tensor(np.stack(expected)), atol=1e-5, rtol=1e-5)
    # The training batches are length-grouped: batches of 4 in a 16-row epoch span fewer lengths than at random.
    assert type(trainer._get_train_sampler()).__name__ == "LengthGroupedSampler"
