#!/usr/bin/env python
"""The compression pipeline (`scripts/compress.py`) on several GLUE tasks with one recipe, and the summary against
the targets: the compressed student at most 1/6 of the teacher's bytes and >= 4x faster at batch 1 while keeping
>= 97% of the teacher's metric averaged over the tasks; INT8 >= 1.5x faster than its float32 source at batch 1 and
32 with <= 1 point lost on each task.

    python scripts/checks/run_compression_suite.py --glue_dir ../shared/glue_data \\
        --teachers sst2=runs/teacher-sst2 mrpc=runs/teacher-mrpc stsb=runs/teacher-stsb \\
        --output_dir runs/compression --report_dir docs/compression --output docs/compression.md \\
        -- --stages distill,prune,vocab,int8 --target_sparsity 0.5

Everything after `--` is the recipe, passed to every task's `compress.py` (`--max_seq_length` and
`--recovery_epochs` may be given per task with `--per_task sst2:--recovery_epochs=1`). Resumable: finished stages
are skipped, so re-running after an interruption goes on where it stopped.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

TARGET_SMALLER, TARGET_FASTER_B1, TARGET_RETENTION = 6.0, 4.0, 0.97
TARGET_INT8_FASTER, TARGET_INT8_POINTS = 1.5, 1.0


def parse(argv: list[str]):
    recipe = []
    if "--" in argv:
        argv, recipe = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--glue_dir", required=True)
    parser.add_argument("--teachers", nargs="+", required=True, help="task=teacher_folder for every task")
    parser.add_argument("--output_dir", required=True, help="<output_dir>/<task> holds each task's stages")
    parser.add_argument("--report_dir", required=True, help="<report_dir>/<task>.md/.json/.png per task")
    parser.add_argument("--output", required=True, help="the summary (markdown; .json next to it)")
    parser.add_argument("--per_task", nargs="*", default=[], help="task:--flag=value, added to that task's recipe")
    args = parser.parse_args(argv)
    teachers = {}
    for item in args.teachers:
        if "=" not in item:
            raise ValueError(f"--teachers takes task=folder, got {item!r}")
        task, folder = item.split("=", 1)
        teachers[task] = folder
    extra: dict[str, list[str]] = {task: [] for task in teachers}
    for item in args.per_task:
        task, flag = item.split(":", 1)
        if task not in teachers:
            raise ValueError(f"--per_task {item}: {task} is not one of the tasks {sorted(teachers)}")
        extra[task] += flag.split("=", 1)
    return args, teachers, recipe, extra


def summarise(reports: dict[str, dict]) -> dict:
    """The final stage of every task against the targets."""
    finals = {task: report["rows"][-1] for task, report in reports.items()}
    int8 = {
        task: next((r for r in report["rows"] if r["run"].endswith("-int8")), None) for task, report in reports.items()
    }
    retention = sum(row["retention"] for row in finals.values()) / len(finals)
    checks = [
        ("final model <= 1/6 of the teacher's bytes on every task",
         all(row["bytes_ratio"] >= TARGET_SMALLER for row in finals.values()),
         ", ".join(f"{t} {row['bytes_ratio']:.2f}x ({row['size_mb']:.1f} MB)" for t, row in finals.items())),
        ("final model >= 4x faster than the teacher at batch 1 on every task",
         all(row["speedup_b1"] >= TARGET_FASTER_B1 for row in finals.values()),
         ", ".join(f"{t} {row['speedup_b1']:.2f}x" for t, row in finals.items())),
        (">= 97% of the teacher's metric, averaged over the tasks", retention >= TARGET_RETENTION,
         f"{retention:.1%} (" + ", ".join(f"{t} {row['retention']:.1%}" for t, row in finals.items()) + ")"),
    ]  # fmt: skip
    if all(int8.values()):
        checks.append((
            "INT8 >= 1.5x faster than its float32 source at batch 1 and 32, <= 1 point lost on every task",
            all(min(r["faster_than_source_b1"], r["faster_than_source_b32"]) >= TARGET_INT8_FASTER
                and -r["points_vs_source"] <= TARGET_INT8_POINTS for r in int8.values()),
            ", ".join(f"{t} {r['faster_than_source_b1']:.2f}x / {r['faster_than_source_b32']:.2f}x, "
                      f"{r['points_vs_source']:+.2f} points" for t, r in int8.items()),
        ))  # fmt: skip
    return {"finals": finals, "retention": retention,
            "checks": [{"target": t, "met": met, "measured": m} for t, met, m in checks]}  # fmt: skip


def markdown(summary: dict, reports: dict[str, dict], command: str, report_dir: str) -> str:
    lines = [
        "# Compression pipeline on GLUE: size, speed and metric per stage",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {next(iter(reports.values()))['machine']}. Each task's full report (every stage, what it cost "
        "and saved, the Pareto plot) is linked below; this page is the final stage of each against the targets.",
        "",
        "| task | final stage | metric | teacher | retention | size (MB) | smaller | speedup b1 | speedup b32 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for task, row in summary["finals"].items():
        teacher = reports[task]["rows"][0]
        link = f"[{task}]({Path(report_dir).name}/{task}.md)"
        lines.append(
            f"| {link} | {row['run']} | {row['score']:.4f} | {teacher['score']:.4f} | {row['retention']:.1%} | "
            f"{row['size_mb']:.1f} | {row['bytes_ratio']:.2f}x | {row['speedup_b1']:.2f}x | "
            f"{row['speedup_b32']:.2f}x |"
        )
    lines += ["", "## Targets", ""]
    for check in summary["checks"]:
        verdict = "met" if check["met"] else "**missed**"
        lines.append(f"- {check['target']}: {check['measured']} ({verdict}).")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    args, teachers, recipe, extra = parse(argv)
    import compress

    reports = {}
    for task, teacher in teachers.items():
        task_argv = ["--task_name", task, "--glue_dir", args.glue_dir, "--teacher_model_name_or_path", teacher,
                     "--output_dir", str(Path(args.output_dir) / task),
                     "--report", str(Path(args.report_dir) / f"{task}.md"), *recipe, *extra[task]]  # fmt: skip
        reports[task] = compress.main(task_argv)
    summary = summarise(reports)
    command = "python scripts/checks/run_compression_suite.py " + " ".join(argv)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(markdown(summary, reports, command, args.report_dir))
    output.with_suffix(".json").write_text(json.dumps({"command": command, **summary}, indent=2) + "\n")
    print(output.read_text())
    return summary


if __name__ == "__main__":
    main()
