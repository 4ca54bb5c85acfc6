"""README's Python examples run as printed, top to bottom in one namespace, as a reader would paste them.

Only the sizes change (a tiny teacher in the README's folders, a few GLUE rows, two steps per trainer); each change is
a text replacement that must match exactly once, so an example edited in README fails here until this test follows.
"""

from __future__ import annotations

import re

import torch
from transformers import AutoModelForSequenceClassification

from conftest import REPO, make_teacher, save_with_tokenizer

GLUE_DIR = 'glue_dir="../shared/glue_data"'
FEW_ROWS = {f"{GLUE_DIR})": f"{GLUE_DIR}, max_train_samples=16, max_eval_samples=8)"}
SHORT = "max_steps=2, report_to='none', "


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(encoding="utf-8"), flags=re.S)


def shrink(code: str, replacements: dict[str, str]) -> str:
    for old, new in replacements.items():
        assert code.count(old) == 1, f"README example changed: expected {old!r} once; update tests/test_readme.py"
        code = code.replace(old, new)
    return code


def test_readme_python_examples_run_and_the_exported_subnetwork_gives_the_in_place_logits(
    tmp_path, monkeypatch, tokenizer, glue_dir
):
    blocks = python_blocks()
    assert len(blocks) == 2, "README's Python examples changed: update tests/test_readme.py"
    work = tmp_path / "work"
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "glue_data").symlink_to(glue_dir)  # the README's ../shared/glue_data
    for folder in ("demo-sst2/teacher", "teacher-cola"):
        save_with_tokenizer(make_teacher(tokenizer), tokenizer, work / "runs" / folder)
    monkeypatch.chdir(work)

    distill = shrink(
        blocks[0],
        {**FEW_ROWS, 'output_dir="student", ': f'output_dir="student", {SHORT}'},
    )
    dynabert = shrink(
        blocks[1],
        {
            **FEW_ROWS,
            'output_dir="runs/dyna-width", ': f'output_dir="runs/dyna-width", {SHORT}',
            'output_dir="runs/dyna", ': f'output_dir="runs/dyna", {SHORT}',
        },
    )
    namespace: dict = {}
    exec(compile(distill, "README.md (DistillationTrainer)", "exec"), namespace)
    student = AutoModelForSequenceClassification.from_pretrained(work / "student")
    assert student.config.num_hidden_layers == 3
    assert namespace["trainer"].state.global_step == 2

    exec(compile(dynabert, "README.md (DynaBERT)", "exec"), namespace)
    exported = AutoModelForSequenceClassification.from_pretrained(work / "runs" / "cola-w0.5")
    full = namespace["depth"].student
    assert exported.num_parameters() < full.num_parameters()
    with torch.no_grad():
        torch.testing.assert_close(exported(**namespace["batch"]).logits, namespace["logits"], atol=1e-5, rtol=1e-5)
