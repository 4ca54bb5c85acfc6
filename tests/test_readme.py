"""The README's and docs/methods.md's Python examples run as printed, each top to bottom as a reader would paste it,
and every relative link in README.md and docs/ points to a file that exists.

Only the sizes change (a tiny teacher in the examples' folders, a few GLUE rows, two steps per trainer); each change is
a text replacement that must match exactly once, so an example edited in the docs fails here until this test follows.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from conftest import REPO, make_teacher, save_with_tokenizer

GLUE_DIR = 'glue_dir="../shared/glue_data"'
FEW_ROWS = {f"{GLUE_DIR})": f"{GLUE_DIR}, max_train_samples=16, max_eval_samples=8)"}
SHORT = "max_steps=2, report_to='none', "
# Markdown links and images, [text](target) or ![alt](target); the target ends at whitespace or ")".
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
LINKED_PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def python_blocks(page: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (REPO / page).read_text(encoding="utf-8"), flags=re.S)


def shrink(code: str, replacements: dict[str, str]) -> str:
    for old, new in replacements.items():
        assert code.count(old) == 1, f"example changed: expected {old!r} once; update tests/test_readme.py"
        code = code.replace(old, new)
    return code


def relative_links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)  # code blocks hold no links
    targets = [target.split("#", 1)[0] for target in LINK.findall(text)]
    return [target for target in targets if target and not re.match(r"[a-z][a-z0-9+.-]*:", target)]


def test_readme_and_methods_python_examples_run_and_the_exported_subnetwork_gives_the_in_place_logits(
    tmp_path, monkeypatch, tokenizer, glue_dir
):
    readme, methods = python_blocks("README.md"), python_blocks("docs/methods.md")
    assert len(readme) == 1 and len(methods) == 1, "the docs' Python examples changed: update tests/test_readme.py"
    work = tmp_path / "work"
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "glue_data").symlink_to(glue_dir)  # the examples' ../shared/glue_data
    for folder in ("demo-sst2/teacher", "teacher-cola"):
        save_with_tokenizer(make_teacher(tokenizer), tokenizer, work / "runs" / folder)
    monkeypatch.chdir(work)

    distill = shrink(readme[0], {**FEW_ROWS, 'output_dir="student", ': f'output_dir="student", {SHORT}'})
    dynabert = shrink(
        methods[0],
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

    namespace = {}  # the DynaBERT example stands alone: it imports and loads all it uses
    exec(compile(dynabert, "docs/methods.md (DynaBERT)", "exec"), namespace)
    exported = AutoModelForSequenceClassification.from_pretrained(work / "runs" / "cola-w0.5")
    full = namespace["depth"].student
    assert exported.num_parameters() < full.num_parameters()
    with torch.no_grad():
        torch.testing.assert_close(exported(**namespace["batch"]).logits, namespace["logits"], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("page", LINKED_PAGES, ids=lambda page: str(page.relative_to(REPO)))
def test_relative_links_point_to_files_that_exist(page):
    missing = [target for target in relative_links(page) if not (page.parent / target).exists()]
    assert not missing, f"{page.relative_to(REPO)} links to missing files: {missing}"


def test_link_check_sees_a_missing_file(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("[ok](page.md#top) [gone](nowhere.md) ![plot](gone.png) [web](https://example.org)\n")
    assert relative_links(page) == ["page.md", "nowhere.md", "gone.png"]
