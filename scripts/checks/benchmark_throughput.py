#!/usr/bin/env python
"""Distillation throughput: what each method costs per step next to plain fine-tuning and the floor, and the same
end-to-end job through bertdistill and through TextBrewer.

    python scripts/checks/benchmark_throughput.py --glue_dir ../shared/glue_data --output docs/throughput.md
    python scripts/checks/benchmark_throughput.py --glue_dir ../shared/glue_data --e2e --e2e_rows 8000 --e2e_epochs 3

Workload: the first --rows training rows of --task_name (SST-2 by default; by default exactly the rows the steps
need), dynamically padded batches of --batch_size, truncated at --max_seq_length. Teacher:
--teacher_model_name_or_path, by default the packaged MiniLM-L6 with a fresh task head (the speed of a step does not
depend on how well the head is trained); student: its layers 1, 3, 5 (3 x 384).

Per-step part. Every measurement runs in its own subprocess, so that its peak memory (resident set size on the CPU,
allocated memory on a GPU) is its own. The subprocesses are all alive at once and take turns: in each of --rounds
rounds every one runs a block of --steps steps while the others wait, and all walk the same batches in the same order,
so the runs of a round see the same batches at nearly the same moment. A step's cost is the wall time between the
ends of consecutive optimizer steps (data loading, forwards, backward, clipping, optimizer and scheduler included);
a ratio is the median over the rounds of the ratio of the two runs' median step in that round (paired, so that a
burst of load from elsewhere hits both sides of a ratio alike). Warm-up steps are not timed.
- `floor`: the teacher's forward (logits only, no gradient) plus the student's forward/backward/optimizer step on
  the same batches, in a bare loop with nothing else;
- `floor-student`: the same bare loop without the teacher: next to `finetune`, what the Trainer's own bookkeeping
  (scheduler, logging, callbacks, loss plumbing) costs a step, which every method through a Trainer pays too;
- `finetune`: the student alone (the no-teacher baseline) through the Trainer;
- one row per method through its Trainer (`kd`, `kd-cached` with `cache_teacher_logits`, `pkd`, `distilbert`,
  `tinybert-intermediate`, `tinybert-prediction`), printed as ratios to the floor and to `finetune`. `kd-cached`'s
  one-time teacher pass is reported apart (timed by its trainer: `teacher_cache_s` in `train_results.json`).

End-to-end part (--e2e): the same job (same rows, epochs, teacher, student and losses) as wall time, from the trainer
or distiller's construction to the end of training: logit KD (0.5 CE + 0.5 soft targets at T = 2) and TinyBERT's
intermediate losses (embedding + hidden-state MSE, attention MSE). `default` is the job exactly as a user gets it,
with no lever flag: whatever bertdistill picks itself on this machine (length-grouped batches, bf16 where the hardware
computes it natively, cached teacher logits for KD, cached teacher outputs for TinyBERT; the report lists what it
picked). `plain` turns every lever off (random batches, fp32, the teacher every step); the other variants turn on
the named levers alone or together (`length`: length-grouped batches, `cache`: cached teacher logits for KD, cached
teacher outputs for TinyBERT, `bf16`: bf16 autocast of both forwards), so each lever's share shows. Every variant's
teacher cache is made afresh in the job's own folder (its one teacher pass is part of the wall time). After each KD
job the student's dev metric is measured (in fp32), so that a lever that costs accuracy shows it (it means something
when --teacher_model_name_or_path is a teacher fine-tuned on the task). TextBrewer (`pip install textbrewer`, the
`bench` extra; skipped with a message when absent) runs its GeneralDistiller on the batches of bertdistill's plain
run. With --e2e_repeats N every job runs N times, interleaved (each variant leading a repeat in turn), and a ratio is
the median over the repeats of the ratio within a repeat; with --e2e_results_dir every finished job is kept there and
a rerun with the same workload skips it (an interrupted benchmark resumes).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PACER_READY = "@@bertdistill-benchmark-block-done"

# Per-step measurements: name -> (method, config overrides); None: a bare loop ("floor" with the teacher's forward).
STEP_RUNS = {
    "floor": None,
    "floor-student": None,
    "finetune": ("finetune", {}),
    "kd": ("kd", {}),
    "kd-cached": ("kd", {"cache_teacher_logits": True}),
    "pkd": ("pkd", {}),
    "distilbert": ("distilbert", {}),
    "tinybert-intermediate": ("tinybert", {"stage": "intermediate"}),
    "tinybert-prediction": ("tinybert", {"stage": "prediction"}),
}
# End-to-end jobs: job -> (method, config overrides); variants: which levers are on.
E2E_JOBS = {
    "kd": ("kd", {"alpha_ce": 0.5, "alpha_kd": 0.5, "temperature": 2.0}),
    "tinybert": ("tinybert", {"stage": "intermediate"}),
}
E2E_VARIANTS = {
    "kd": ["default", "plain", "length", "cache", "bf16", "length+cache", "length+cache+bf16"],
    "tinybert": ["default", "plain", "length", "cache", "bf16", "length+bf16", "length+cache+bf16"],
}
E2E_LEVERS = ("length", "cache", "bf16")
# What `cache` turns on in each job: the teacher's logits for KD, its intermediate outputs for TinyBERT.
E2E_CACHE = {"kd": "cache_teacher_logits", "tinybert": "cache_teacher_outputs"}
# The workload arguments a kept end-to-end result must share with the current run to be reused.
E2E_WORKLOAD = ("task_name", "teacher_model_name_or_path", "max_seq_length", "batch_size", "e2e_rows", "e2e_epochs",
                "e2e_eval_rows")  # fmt: skip
# Jobs whose student learns the task (its dev metric after the job says whether a lever kept the metric).
E2E_EVALUATED = {"kd"}


def rss_mb() -> float | None:
    """Current resident set size in MB (Linux), `None` elsewhere."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return None


def peak_memory_mb() -> float:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---- the workload, built the same way in every subprocess ------------------------------------------------------


def load_workload(args, rows: int):
    import datasets
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from bertdistill.glue_run import packaged_minilm_path, tokenize_split
    from glue_tasks import get_task, load_glue_split

    datasets.disable_caching()  # every subprocess computes what it times, nothing is read back from an earlier one
    task = get_task(args.task_name)
    path = args.teacher_model_name_or_path or packaged_minilm_path()
    teacher = AutoModelForSequenceClassification.from_pretrained(path, num_labels=task.num_labels)
    tokenizer = AutoTokenizer.from_pretrained(path)
    raw = load_glue_split(task, "train", args.glue_dir)
    if rows > len(raw):
        raise ValueError(f"--rows {rows} but {task.name} has {len(raw)} training rows")
    data = tokenize_split(raw.select(range(rows)), task, tokenizer, args.max_seq_length)
    return teacher, tokenizer, data


def make_trainer(args, teacher, tokenizer, data, method_name: str, overrides: dict, output_dir: str, **extra):
    import torch

    from bertdistill import build_student, get_method

    torch.manual_seed(0)
    student = build_student(teacher, num_layers=3, selection="uniform")
    method = get_method(method_name)
    config = method.config_class(
        output_dir=output_dir, per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=64,
        learning_rate=1e-4, save_strategy="no", report_to=[], disable_tqdm=True, logging_steps=10**6, seed=0,
        **{**overrides, **extra},
    )  # fmt: skip
    start = time.perf_counter()
    trainer = method.trainer_class(
        model=student, teacher_model=teacher, args=config, train_dataset=data, processing_class=tokenizer,
    )  # fmt: skip
    return trainer, time.perf_counter() - start


class Pacer:
    """Takes turns with the other step workers: after the warm-up steps and after every block of --steps timed steps
    the worker says so on stdout and waits for the coordinator's word on stdin (`go`: one more block, `stop`: end).
    A step's time runs from the end of the previous step (or from the word `go`) to the end of this one, so a wait
    is never counted."""

    def __init__(self, warmup: int, steps: int):
        self.warmup, self.steps = warmup, steps
        self.count, self.last = 0, None
        self.blocks: list[list[float]] = []
        self.stopped = False

    def tick(self) -> bool:
        """Call at the end of every optimizer step; False once the coordinator said stop."""
        now = time.perf_counter()
        self.count += 1
        if self.count > self.warmup:
            self.blocks[-1].append(now - self.last)
        if self.count == self.warmup or (self.count > self.warmup and len(self.blocks[-1]) == self.steps):
            print(PACER_READY, flush=True)
            word = sys.stdin.readline().strip()
            if word != "go":
                self.stopped = True
                return False
            self.blocks.append([])
        self.last = time.perf_counter()
        return True


def step_worker(args, name: str) -> dict:
    import torch
    from transformers import TrainerCallback

    teacher, tokenizer, data = load_workload(args, args.rows)
    pacer = Pacer(args.warmup, args.steps)
    setup_rss = rss_mb()
    with tempfile.TemporaryDirectory() as tmp:
        if STEP_RUNS[name] is None:
            trainer, init_s = make_trainer(args, teacher, tokenizer, data, "finetune", pinned_step_config({}), tmp)
            student, device = trainer.student, trainer.args.device
            teacher = teacher.to(device).eval()
            optimizer = trainer.create_optimizer()  # the Trainer's own (fused AdamW on torch >= 2.8), same settings
            student.train()
            # One pass over the Trainer's own dataloader: the same batches, in the same order, as the Trainer's runs.
            for batch in trainer.get_train_dataloader():
                batch = {k: v.to(device) for k, v in batch.items()}
                if name == "floor":
                    with torch.no_grad():
                        teacher(**{k: v for k, v in batch.items() if k != "labels"})
                student(**batch).loss.backward()
                torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
                optimizer.step()
                optimizer.zero_grad()
                if not pacer.tick():
                    break
        else:

            class Paced(TrainerCallback):
                def on_step_end(self, _args, _state, control, **kwargs):
                    if not pacer.tick():
                        control.should_training_stop = True

            method, overrides = STEP_RUNS[name]
            trainer, init_s = make_trainer(
                args, teacher, tokenizer, data, method, pinned_step_config(overrides), tmp,
                max_steps=steps_needed(args),
            )  # fmt: skip
            trainer.add_callback(Paced())
            trainer.train()
    if not pacer.stopped:
        raise RuntimeError(f"{name} ran out of batches before the coordinator said stop")
    shapes = {role: f"{m.config.num_hidden_layers} x {m.config.hidden_size}" for role, m in
              (("teacher", teacher), ("student", trainer.student))}  # fmt: skip
    return {"blocks": pacer.blocks, "init_s": init_s, "setup_rss_mb": setup_rss, "peak_mb": peak_memory_mb(),
            "teacher_cache_s": getattr(trainer, "teacher_cache_seconds", 0.0), "shapes": shapes}  # fmt: skip


def steps_needed(args) -> int:
    """Optimizer steps of one step worker: the warm-up and every round's block."""
    return args.warmup + args.rounds * args.steps


def run_step_workers(argv: list[str], names: list[str], rounds: int) -> dict[str, dict]:
    """Every step measurement in its own subprocess (its peak memory is its own), all alive at once, taking turns:
    in each round every worker runs one block of steps while the others wait, on the same batches (they all walk the
    same batch order in step). Short turns spread a burst of load from elsewhere over all runs alike."""
    workers, logs = {}, {}

    def failed(name: str) -> RuntimeError:
        logs[name].seek(0)
        code = workers[name].returncode
        return RuntimeError(f"step worker {name} failed (exit {code}):\n{logs[name].read()[-3000:]}")

    def wait_block(name: str) -> None:
        for line in workers[name].stdout:
            if line.strip() == PACER_READY:
                return
        workers[name].wait()
        raise failed(name)

    def say(name: str, word: str) -> None:
        workers[name].stdin.write(word + "\n")
        workers[name].stdin.flush()

    outputs = {name: tempfile.NamedTemporaryFile(suffix=".json") for name in names}
    try:
        for name in names:  # one at a time: each warms up while the others wait
            logs[name] = tempfile.TemporaryFile("w+")
            workers[name] = subprocess.Popen(
                [sys.executable, __file__, *argv, "--step_worker", name, "--worker_output", outputs[name].name],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=logs[name], text=True, cwd=REPO,
            )  # fmt: skip
            wait_block(name)
        for round_index in range(rounds):
            lead = round_index % len(names)  # each run leads a round in turn
            order = names[lead:] + names[:lead]
            for name in order:
                say(name, "go")
                wait_block(name)
            print(f"round {round_index + 1}/{rounds} done", flush=True)
        results = {}
        for name in names:
            say(name, "stop")
            workers[name].communicate()  # reads what it still prints, so that a full pipe cannot block it
            if workers[name].returncode:
                raise failed(name)
            results[name] = json.loads(Path(outputs[name].name).read_text())
        return results
    finally:
        for worker in workers.values():
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        for handle in [*outputs.values(), *logs.values()]:
            handle.close()


def lever_config(job: str, variant: str) -> dict:
    """Config fields of an end-to-end variant: none for `default` (bertdistill picks), otherwise every lever pinned,
    on when the variant names it (`plain` and `textbrewer`: all off)."""
    if variant == "default":
        return {}
    levers = set(variant.split("+")) - {"plain", "textbrewer"}
    unknown = levers - set(E2E_LEVERS)
    if unknown:
        raise ValueError(f"unknown levers {sorted(unknown)} in variant {variant!r}; levers: {', '.join(E2E_LEVERS)}")
    config = {
        "train_sampling_strategy": "group_by_length" if "length" in levers else "random",
        "cache_teacher_logits": False,
        "cache_teacher_outputs": False,
        # Mixed precision: bf16 autocast of the teacher's and the student's forwards (fp32 weights and losses).
        "bf16": "bf16" in levers,
    }
    if "cache" in levers:
        config[E2E_CACHE[job]] = True
    if "bf16" in levers:
        import torch

        config["use_cpu"] = not torch.cuda.is_available()
    return config


def pinned_step_config(overrides: dict) -> dict:
    """A per-step run's config: every lever off (the floor's random batches in fp32) unless the run says otherwise,
    so that all runs walk the same batches and differ only in their method."""
    return {**lever_config("", "plain"), **overrides}


def e2e_worker(args, name: str) -> dict:
    """One end-to-end job: `<job>:<variant>` through bertdistill or `<job>:textbrewer`."""
    job, variant = name.split(":")
    teacher, tokenizer, data = load_workload(args, args.e2e_rows)
    method, overrides = E2E_JOBS[job]
    with tempfile.TemporaryDirectory() as tmp:
        extra = {"num_train_epochs": args.e2e_epochs, "teacher_cache_dir": os.path.join(tmp, "teacher_cache"),
                 **lever_config(job, variant)}  # fmt: skip
        start = time.perf_counter()
        trainer, _ = make_trainer(args, teacher, tokenizer, data, method, overrides, tmp, **extra)
        if variant == "textbrewer":
            run_textbrewer(job, trainer, teacher, args.e2e_epochs, tmp)
        else:
            trainer.train()
        seconds = time.perf_counter() - start
    result = {"seconds": seconds, "peak_mb": peak_memory_mb()}
    if variant != "textbrewer":
        result["speed_levers"] = {lever: choice.to_dict() for lever, choice in trainer.speed_levers.items()}
    if job in E2E_EVALUATED:
        result["dev_metric"] = dev_metric(args, trainer.student, tokenizer)
    return result


def predictions_differing(a: list, b: list) -> int:
    """How many dev rows two students predict differently (class index, or regression score beyond 1e-4): a lever
    that leaves the metric unchanged can still change the model, and this shows whether it did."""
    if len(a) != len(b):
        raise ValueError(f"predictions of {len(a)} and {len(b)} rows cannot be compared")
    return sum(abs(x - y) > 1e-4 if isinstance(x, float) else x != y for x, y in zip(a, b))


def dev_metric(args, student, tokenizer) -> dict:
    """The student's main dev metric after the job (first --e2e_eval_rows dev rows); its weights are fp32 even after
    a bf16 job (autocast keeps fp32 weights) and the evaluation runs without autocast."""
    from bertdistill.glue_run import evaluate_model, tokenize_split
    from glue_tasks import get_task, load_glue_split

    task = get_task(args.task_name)
    dev = load_glue_split(task, task.eval_splits[0], args.glue_dir)
    dev = tokenize_split(dev.select(range(min(args.e2e_eval_rows, len(dev)))), task, tokenizer, args.max_seq_length)
    metrics, predictions = evaluate_model(student, dev, tokenizer, task, return_predictions=True)
    return {"name": task.main_metric, "value": metrics[f"eval_{task.main_metric}"], "rows": len(dev),
            "predictions": predictions}  # fmt: skip


def run_textbrewer(job: str, trainer, teacher, epochs: float, output_dir: str) -> None:
    """The job through TextBrewer's GeneralDistiller, on the batches of bertdistill's plain run (same sampler, same
    dynamic padding), with the same student, the Trainer's optimizer (fused AdamW, lr 1e-4) and gradient clipping."""
    from textbrewer import DistillationConfig, GeneralDistiller, TrainingConfig

    student, device = trainer.student, trainer.args.device
    needs_layers = job == "tinybert"
    for model in (teacher, student):
        if needs_layers:
            model.set_attn_implementation("eager")  # the only implementation that returns attention maps
        model.config.output_hidden_states = needs_layers
        model.config.output_attentions = needs_layers

    def adaptor(batch, outputs):
        adapted = {"logits": outputs.logits, "losses": [outputs.loss]}
        if needs_layers:
            adapted |= {"hidden": outputs.hidden_states, "attention": outputs.attentions}
        return adapted

    if job == "kd":
        distill_config = DistillationConfig(temperature=2.0, hard_label_weight=0.5, kd_loss_weight=0.5)
    else:
        # TinyBERT's uniform map 6 -> 3: hidden states 0, 1, 2, 3 <- 0, 2, 4, 6; attention of layer m <- layer 2m.
        matches = [{"layer_T": 2 * m, "layer_S": m, "feature": "hidden", "loss": "hidden_mse", "weight": 1}
                   for m in range(4)]  # fmt: skip
        matches += [{"layer_T": 2 * m + 1, "layer_S": m, "feature": "attention", "loss": "attention_mse", "weight": 1}
                    for m in range(3)]  # fmt: skip
        distill_config = DistillationConfig(kd_loss_weight=0.0, intermediate_matches=matches)
    train_config = TrainingConfig(
        device=device, output_dir=output_dir, log_dir=os.path.join(output_dir, "log"), ckpt_epoch_frequency=epochs
    )
    distiller = GeneralDistiller(
        train_config=train_config, distill_config=distill_config, model_T=teacher.to(device).eval(),
        model_S=student, adaptor_T=adaptor, adaptor_S=adaptor,
    )  # fmt: skip
    optimizer = trainer.create_optimizer()
    distiller.train(
        optimizer, trainer.get_train_dataloader(), num_epochs=int(epochs), max_grad_norm=1.0, batch_postprocessor=dict
    )


# ---- the coordinator ------------------------------------------------------------------------------------------


def textbrewer_available() -> bool:
    try:
        import textbrewer  # noqa: F401
    except ImportError:
        return False
    return True


def run_worker(argv: list[str], kind: str, name: str) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        command = [sys.executable, __file__, *argv, f"--{kind}_worker", name, "--worker_output", out.name]
        result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
        if result.returncode:
            raise RuntimeError(f"worker {name} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return json.loads(Path(out.name).read_text())


def e2e_variants(args, job: str) -> list[str]:
    """The variants of `job` to run: --e2e_variants (those the job has) or all, then TextBrewer when installed."""
    chosen = [v for v in E2E_VARIANTS[job] if not args.e2e_variants or v in args.e2e_variants]
    return chosen + (["textbrewer"] if textbrewer_available() else [])


def run_e2e(args, forwarded: list[str]) -> list[dict]:
    """Every end-to-end job --e2e_repeats times, interleaved, each in its own subprocess; one row per job and variant
    with the median wall time and the median over repeats of each paired ratio."""
    if not textbrewer_available():
        print("TextBrewer is not installed (pip install 'bertdistill[bench]'): its end-to-end runs are skipped")
    kept = Path(args.e2e_results_dir) if args.e2e_results_dir else None
    workload = {k: getattr(args, k) for k in E2E_WORKLOAD}
    results: dict[tuple[str, str], list[dict]] = {}
    for repeat in range(args.e2e_repeats):
        for job in args.e2e_jobs:
            variants = e2e_variants(args, job)
            lead = repeat % len(variants)  # each variant leads a repeat in turn
            for variant in variants[lead:] + variants[:lead]:
                path = kept / f"{job}-{variant}-r{repeat}.json" if kept else None
                if path is not None and path.is_file() and json.loads(path.read_text())["workload"] == workload:
                    result = json.loads(path.read_text())["result"]
                    print(f"e2e {job} {variant} repeat {repeat + 1}: {result['seconds']:.1f} s (kept)", flush=True)
                else:
                    result = run_worker(forwarded, "e2e", f"{job}:{variant}")
                    print(f"e2e {job} {variant} repeat {repeat + 1}: {result['seconds']:.1f} s", flush=True)
                    if path is not None:
                        path.parent.mkdir(parents=True, exist_ok=True)
                        path.write_text(json.dumps({"workload": workload, "result": result}))
                results.setdefault((job, variant), []).append(result)
    rows = []
    for (job, variant), runs in results.items():
        seconds = [r["seconds"] for r in runs]
        row = {"job": job, "variant": variant, "seconds": statistics.median(seconds), "seconds_by_repeat": seconds,
               "peak_mb": max(r["peak_mb"] for r in runs)}  # fmt: skip
        if "speed_levers" in runs[0]:
            row["speed_levers"] = runs[0]["speed_levers"]
        for base in ("plain", "textbrewer"):
            if (job, base) in results:
                paired = [b["seconds"] / r["seconds"] for r, b in zip(runs, results[(job, base)])]
                row[f"speedup_vs_{base}"] = statistics.median(paired)
                row[f"speedup_vs_{base}_by_repeat"] = paired
        if "dev_metric" in runs[0]:
            row["dev_metric"] = dict(runs[0]["dev_metric"])
            row["dev_metric"]["value_by_repeat"] = [r["dev_metric"]["value"] for r in runs]
            if (job, "plain") in results:
                row["dev_metric"]["differ_from_plain"] = predictions_differing(
                    runs[0]["dev_metric"]["predictions"], results[(job, "plain")][0]["dev_metric"]["predictions"]
                )
        rows.append(row)
    order = [(job, variant) for job in args.e2e_jobs for variant in e2e_variants(args, job)]
    return sorted(rows, key=lambda row: order.index((row["job"], row["variant"])))


def machine() -> str:
    import torch

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU, {torch.get_num_threads()} threads"
    return f"{platform.machine()}, {device}, torch {torch.__version__}"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--glue_dir", default=os.environ.get("GLUE_DIR", "../shared/glue_data"))
    parser.add_argument("--task_name", default="sst2")
    parser.add_argument("--teacher_model_name_or_path", default=None, help="Default: the packaged MiniLM-L6.")
    parser.add_argument("--max_seq_length", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument(
        "--rows", type=int, default=None,
        help="Training rows of the per-step part (default: exactly the batches it needs, (warmup + rounds x steps) x "
        "batch_size); every run walks them once, in the same order.",
    )  # fmt: skip
    parser.add_argument("--steps", type=int, default=10, help="Timed steps per run and round (one turn).")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--runs", nargs="+", default=list(STEP_RUNS), choices=list(STEP_RUNS))
    parser.add_argument("--e2e", action="store_true", help="Also time the end-to-end jobs (and TextBrewer).")
    parser.add_argument("--e2e_only", action="store_true", help="Only the end-to-end jobs: no per-step part.")
    parser.add_argument("--e2e_jobs", nargs="+", default=list(E2E_JOBS), choices=list(E2E_JOBS))
    parser.add_argument("--e2e_rows", type=int, default=8000)
    parser.add_argument("--e2e_epochs", type=int, default=3)
    parser.add_argument("--e2e_eval_rows", type=int, default=10**9, help="Dev rows for the metric after a job.")
    parser.add_argument(
        "--e2e_variants", nargs="+", default=None, choices=sorted({v for vs in E2E_VARIANTS.values() for v in vs}),
        help="Run only these variants of each job (default: all); TextBrewer runs whenever it is installed.",
    )  # fmt: skip
    parser.add_argument("--e2e_repeats", type=int, default=1, help="Run every end-to-end job this many times, "
                        "interleaved; ratios are medians of the ratios within each repeat.")  # fmt: skip
    parser.add_argument("--e2e_results_dir", default=None, help="Keep each finished end-to-end job here and reuse it "
                        "on a rerun with the same workload (resume an interrupted benchmark).")  # fmt: skip
    parser.add_argument("--output", default=None, help="Write the report (markdown) here and its numbers next to it.")
    parser.add_argument("--step_worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--e2e_worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker_output", default=None, help=argparse.SUPPRESS)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if args.step_worker or args.e2e_worker:
        result = step_worker(args, args.step_worker) if args.step_worker else e2e_worker(args, args.e2e_worker)
        Path(args.worker_output).write_text(json.dumps(result))
        return result
    if args.e2e_repeats < 1:
        raise ValueError(f"--e2e_repeats must be at least 1, not {args.e2e_repeats}")
    args.runs = list(dict.fromkeys(args.runs))  # a run named twice is measured once
    if not {"floor", "finetune"} <= set(args.runs):
        raise ValueError("--runs must include floor and finetune: every ratio is taken against them")

    if args.warmup < 1:
        raise ValueError(f"--warmup must be at least 1 (a worker's first turn follows its warm-up), not {args.warmup}")
    needed = steps_needed(args) * args.batch_size
    if args.rows is None:
        args.rows = needed
    elif args.rows < needed:
        raise ValueError(
            f"--rows {args.rows} is too few: {steps_needed(args)} steps (--warmup + --rounds x --steps) of "
            f"--batch_size {args.batch_size} need {needed}, so that every run walks the same batches in one epoch"
        )
    forwarded = [a for a in argv if a not in ("--e2e", "--e2e_only")] + ["--rows", str(args.rows)]
    if args.e2e_only:
        args.e2e = True
        report = {"machine": machine(), "args": {k: v for k, v in vars(args).items() if "worker" not in k},
                  "steps": [], "e2e": run_e2e(args, forwarded)}  # fmt: skip
        return write_report(args, report)
    results = run_step_workers(forwarded, args.runs, args.rounds)
    shapes = results[args.runs[0]]["shapes"]
    # Per round: the median of the block's steps; every ratio is taken within a round (same batches, same moment),
    # and a run's ratio is the median over the rounds of those paired ratios.
    by_round = {name: [statistics.median(block) for block in result["blocks"]] for name, result in results.items()}

    def paired(name: str, base: str) -> list[float]:
        return [t / b for t, b in zip(by_round[name], by_round[base])]

    rows = []
    for name in args.runs:
        step_s = statistics.median([t for block in results[name]["blocks"] for t in block])
        vs_floor = paired(name, "floor")
        rows.append({
            "run": name, "step_s": step_s, "samples_per_s": args.batch_size / step_s,
            "vs_floor": statistics.median(vs_floor), "vs_finetune": statistics.median(paired(name, "finetune")),
            "peak_mb": results[name]["peak_mb"], "setup_rss_mb": results[name]["setup_rss_mb"],
            "init_s": results[name]["init_s"], "vs_floor_by_round": vs_floor,
        })  # fmt: skip
    report = {"machine": machine(), "args": {k: v for k, v in vars(args).items() if "worker" not in k},
              "shapes": shapes, "steps": rows}  # fmt: skip
    if "kd-cached" in results:
        # Timed inside the trainer, around the one teacher pass that writes the logits column.
        report["teacher_pass_s"] = results["kd-cached"]["teacher_cache_s"]

    if args.e2e:
        report["e2e"] = run_e2e(args, forwarded)
    return write_report(args, report)


def write_report(args, report: dict) -> dict:
    """Print the report and write it to --output (markdown) with its numbers next to it (.json)."""
    text = markdown(report)
    print(text)
    if args.output:
        output = Path(args.output)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
        output.write_text(text + "\n")
    return report


def markdown(report: dict) -> str:
    args = report["args"]
    per_step = bool(report["steps"])
    shown = ("rows", "steps", "warmup", "rounds") if per_step else ()
    shown += ("teacher_model_name_or_path",)
    shown += ("e2e_rows", "e2e_epochs", "e2e_variants", "e2e_repeats", "e2e_results_dir") if args["e2e"] else ()

    def flag(name, value) -> str:
        return f"--{name} " + (" ".join(map(str, value)) if isinstance(value, list) else str(value))

    flags = " ".join(flag(k, v) for k, v in args.items() if k in shown and v is not None)
    command = f"python scripts/checks/benchmark_throughput.py --glue_dir {args['glue_dir']} {flags}"
    command += " --e2e" if args["e2e"] else ""
    command += "" if per_step else " --e2e_only"
    lines = [
        "# Distillation throughput",
        "",
        f"Command: `{command}`. A second torch job on the same cores distorts every ratio: run it alone on the "
        "machine, or see the load noted with the report.",
        "",
        f"Machine: {report['machine']}.",
    ]
    if per_step:
        lines += [
            "",
            f"Per step: {args['rows']} {args['task_name']} training rows, batch {args['batch_size']}, max length "
            f"{args['max_seq_length']}, dynamic padding; teacher {report['shapes']['teacher']}, student "
            f"{report['shapes']['student']}; {args['rounds']} rounds, each run taking a turn of {args['steps']} "
            "steps on the same batches per round; s/step: median over every step; ratios: median over the rounds of "
            "the ratio within the round.",
            "",
            "| run | s/step | samples/s | vs floor | vs floor, each round | vs finetune | peak memory (MB) |",
            "|---|---|---|---|---|---|---|",
        ]
    for row in report["steps"]:
        rounds = " / ".join(f"{r:.2f}" for r in row.get("vs_floor_by_round", [])) or "n/a"  # older reports
        lines.append(f"| {row['run']} | {row['step_s']:.3f} | {row['samples_per_s']:.1f} | {row['vs_floor']:.2f}x | "
                     f"{rounds} | {row['vs_finetune']:.2f}x | {row['peak_mb']:.0f} |")  # fmt: skip
    if "teacher_pass_s" in report:
        lines += [
            "",
            f"kd-cached's one-time teacher pass over the {args['rows']} rows: {report['teacher_pass_s']:.1f} s.",
        ]
    if report.get("e2e"):
        repeats = args.get("e2e_repeats", 1)
        lines += [
            "",
            f"End to end: {args['e2e_rows']} {args['task_name']} rows x {args['e2e_epochs']} epochs, batch "
            f"{args['batch_size']}, max length {args['max_seq_length']}; teacher 6 x 384, student its layers 1, 3, 5"
            + (f", every job run {repeats} times, interleaved (wall time: median; ratios: median of the ratios "
               "within a repeat)." if repeats > 1 else "."),
            "",
            "| job | run | wall time (s) | each repeat (s) | speedup vs plain | speedup vs TextBrewer | "
            "peak memory (MB) | dev metric | dev predictions differing from plain |",
            "|---|---|---|---|---|---|---|---|---|",
        ]  # fmt: skip
        for row in report["e2e"]:
            vs_plain = f"{row['speedup_vs_plain']:.2f}x" if "speedup_vs_plain" in row else "n/a"
            vs_tb = f"{row['speedup_vs_textbrewer']:.2f}x" if "speedup_vs_textbrewer" in row else "n/a"
            each = " / ".join(f"{t:.0f}" for t in row.get("seconds_by_repeat", [row["seconds"]]))
            dev = row.get("dev_metric", {})
            metric = f"{dev['name']} {dev['value']:.4f}" if dev else "n/a"
            differ = f"{dev['differ_from_plain']} of {dev['rows']}" if "differ_from_plain" in dev else "n/a"
            lines.append(f"| {row['job']} | {row['variant']} | {row['seconds']:.1f} | {each} | {vs_plain} | {vs_tb} | "
                         f"{row['peak_mb']:.0f} | {metric} | {differ} |")  # fmt: skip
        defaults = [row for row in report["e2e"] if row["variant"] == "default" and "speed_levers" in row]
        if defaults:
            lines += ["", "What `default` (no lever flag) picked on this machine:", ""]
            for row in defaults:
                picked = "; ".join(
                    f"`{name}` {lever['value']} ({lever['source']}" + (f": {lever['reason']})" if lever["reason"]
                                                                       else ")")
                    for name, lever in row["speed_levers"].items()
                )  # fmt: skip
                lines.append(f"- {row['job']}: {picked}.")
    lines += ["", "## Targets", "", *targets(report)]
    return "\n".join(lines)


def targets(report: dict) -> list[str]:
    """The issue's throughput targets, each as a line saying met or missed, from the report's own numbers."""

    def verdict(ok: bool) -> str:
        return "met" if ok else "**missed**"

    steps = {row["run"]: row for row in report["steps"]}
    distilled = [row for name, row in steps.items() if name not in ("floor", "floor-student", "finetune", "kd-cached")]
    lines = []
    if distilled:
        worst = max(distilled, key=lambda row: row["vs_floor"])
        judged = verdict(worst["vs_floor"] <= 1.10)
        bare, trainer = steps.get("floor-student"), steps.get("finetune")
        if bare and trainer and bare["step_s"] > trainer["step_s"]:
            # A bare loop slower than the Trainer's own is no lower bound: a ratio under it proves nothing.
            judged = (
                f"not judged: the bare student loop (floor-student, {bare['step_s']:.3f} s) is slower than the "
                f"Trainer's (finetune, {trainer['step_s']:.3f} s), so the floor is not the least a step costs"
            )
        ratios = ", ".join(f"{row['run']} {row['vs_floor']:.2f}x" for row in distilled)
        lines.append(f"- A distillation step costs <= 1.10x the floor: {ratios} ({judged}).")
    if "kd-cached" in steps:
        ratio = steps["kd-cached"]["vs_finetune"]
        lines.append(f"- Logit KD with cached teacher outputs costs <= 1.05x plain fine-tuning: {ratio:.2f}x "
                     f"({verdict(ratio <= 1.05)}).")  # fmt: skip
    e2e = {(row["job"], row["variant"]): row for row in report.get("e2e") or []}
    for job in dict.fromkeys(job for job, _ in e2e):
        default, textbrewer = e2e.get((job, "default")), e2e.get((job, "textbrewer"))
        if default is None or "speedup_vs_textbrewer" not in default:
            continue
        ratio = default["speedup_vs_textbrewer"]
        if "dev_metric" in default and textbrewer is not None and "dev_metric" in textbrewer:
            ours, theirs = default["dev_metric"], textbrewer["dev_metric"]
            kept = ours["value"] >= theirs["value"]
            metric = f"{ours['name']} {ours['value']:.4f} vs {theirs['value']:.4f}"
        else:
            kept, metric = True, "no dev metric (the job trains no task head)"
        lines.append(
            f"- The default {job} job (no lever flag) >= 2.5x faster end to end than TextBrewer, dev metric no worse: "
            f"{ratio:.2f}x, {metric} ({verdict(ratio >= 2.5 and kept)})."
        )
    return lines


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
