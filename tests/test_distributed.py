"""Two CPU processes under `accelerate launch`: DDP keeps the student identical on both ranks.

accelerate's `--cpu` launcher starts a single process whatever `--num_processes` says (its multi-CPU mode goes through
MPI), so two real CPU ranks are launched with `--multi_gpu --num_processes 2` (torchrun, gloo) and `use_cpu`.
"""

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from conftest import REPO, accelerate_launch

TWO_RANKS = ["--multi_gpu", "--num_processes", "2"]


@pytest.mark.parametrize(
    "method",
    ["kd", "tinybert", "tinybert-cached", "dynabert", "kd-movement", "feature", "dml", "byot", "grafting", "gan_kd"],
)
def test_student_weights_are_identical_on_both_ranks(tmp_path, tokenizer_dir, method):
    worker = Path(__file__).parent / "two_rank_worker.py"
    accelerate_launch(*TWO_RANKS, worker, tokenizer_dir, tmp_path, method, cwd=tmp_path)
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert rank0["world"] == rank1["world"] == 2
    moved = [k for k, v in rank0["final"].items() if not torch.equal(v, rank0["initial"][k])]
    assert moved, "training changed nothing"
    if method.startswith("tinybert"):  # the projections live in the DDP-wrapped model: trained and kept in sync
        assert any(k.startswith("extras.proj") for k in moved)
    if method == "feature":  # VID's regressor and variances and AB's connector: trained and kept in sync
        assert any(k.startswith("extras.vid_hidden_") and k.endswith("log_scale") for k in moved)
        assert any(k.startswith("extras.ab_ffn_") for k in moved)
    if method == "gan_kd":  # the discriminator lives in the extras: trained and kept in sync
        assert any(k.startswith("extras.discriminator.") for k in moved)
    if method in ("dml", "grafting"):  # the peer lives in the DDP-wrapped model's extras: trained and kept in sync
        assert any(k.startswith("extras.peer_1.") for k in moved)
    if method == "byot":  # every exit's head trains
        assert {k.split(".")[2] for k in moved if k.startswith("student.exits.")} == {"1", "2"}
    if method == "tinybert-cached":
        # The main process wrote the cache, the other waited and read it; training ran the teacher on neither.
        assert rank0["teacher_forwards_in_init"] > 0 and rank1["teacher_forwards_in_init"] == 0
        assert rank0["teacher_forwards"] == rank0["teacher_forwards_in_init"] and rank1["teacher_forwards"] == 0
        assert [p.name for p in (tmp_path / "cache").iterdir() if ".tmp" in p.name] == []
    if method == "kd-movement":  # both ranks reached the same masks: equal weights, zeros included
        weights = [
            v for k, v in rank0["final"].items() if ".encoder.layer." in k and k.endswith("weight") and v.dim() == 2
        ]
        assert len(weights) == 12 and all(abs(int((w == 0).sum()) - w.numel() / 2) <= 1 for w in weights)
    for key, value in rank0["final"].items():
        assert torch.equal(value, rank1["final"][key]), key


def test_distill_glue_runs_under_two_processes(teacher_dir, glue_dir, tmp_path):
    out = tmp_path / "student"
    flags = "--method kd --task_name rte --student_num_layers 2 --max_steps 3 --max_train_samples 32"
    flags += " --max_eval_samples 16 --max_seq_length 32 --per_device_train_batch_size 4 --report_to none"
    flags += " --use_cpu true --logging_steps 1"
    accelerate_launch(
        *TWO_RANKS, REPO / "scripts" / "distill_glue.py", *flags.split(), "--teacher_model_name_or_path", teacher_dir,
        "--glue_dir", glue_dir, "--output_dir", out, cwd=tmp_path,
    )  # fmt: skip
    assert AutoModelForSequenceClassification.from_pretrained(out).config.num_hidden_layers == 2
    assert (out / "eval_results.json").is_file() and (out / "README.md").is_file()
    # 3 steps x 4 rows x 2 ranks = 24 of 32 rows: both processes took part.
    assert json.loads((out / "train_results.json").read_text())["epoch"] == 0.75
