#!/usr/bin/env python
"""Compress a fine-tuned teacher on a GLUE task in one pipeline: distill -> prune -> factorize -> quantization-aware
distillation -> vocabulary pruning -> ONNX INT8, each stage optional, each stage's output a loadable checkpoint (or
ONNX folder), and one report of what every stage costs in metric and saves in bytes and latency.

    python scripts/compress.py --task_name sst2 --glue_dir ../shared/glue_data \\
        --teacher_model_name_or_path runs/teacher-sst2 --output_dir runs/compress-sst2 \\
        --stages distill,prune,vocab,int8 --student_num_layers 3 --target_sparsity 0.5 \\
        --report docs/compression/sst2.md --max_bytes 14.5e6

A single .json/.yaml argument holds the same options (a recipe). Stages run in the fixed order above, each reading the
previous stage's output: training stages (distill, prune and factorize recover by distillation from the teacher, qat
trains fake-quantized) come before vocabulary pruning because the teacher reads the full vocabulary, and INT8 comes
last because it leaves PyTorch. Every stage writes into `<output_dir>/<n>-<stage>.partial` and renames it when done,
so a finished stage folder is whole; re-running skips finished stages and resumes an interrupted training stage from
its last checkpoint.

The report (`--report`: markdown, with .json and .png next to it) has one row per model (the teacher, then every
stage's output): dev metric on the full dev split, retention vs the teacher, parameters, bytes on disk, CPU latency at
batch 1 and 32 (median forward on real dev sentences, all models interleaved in one run; a speedup is the median over
the repeats of the teacher's time over the model's in the same repeat), and the Pareto plot of metric vs bytes and vs
latency. `--max_bytes` / `--max_latency_ms` pick the best row within the budget.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, HfArgumentParser
from transformers.trainer_utils import get_last_checkpoint, set_seed

from bertdistill import DistillationTrainer, DistillationTrainingConfig, build_student
from bertdistill.benchmark import count_parameters, measure_side_by_side, size_on_disk
from bertdistill.compression.selection import choose_within_budget
from bertdistill.glue_run import (
    GlueRunArguments,
    check_max_seq_length,
    check_model_path,
    compute_metrics_for,
    evaluate_model,
    load_glue_datasets,
    load_teacher,
    parse_args,
    run_script,
)
from glue_tasks import check_glue_dir, get_task, load_glue_split

logger = logging.getLogger(__name__)

STAGES = ("distill", "prune", "factorize", "qat", "vocab", "int8")
TRAINING_STAGES = ("distill", "prune", "factorize", "qat")
INT8_MODES = ("dynamic", "static")
DONE_FILE = "stage.json"
SETTINGS_FILE = "settings.json"
RECOVERY_TEACHERS = ("teacher", "input")
TRAINING_SETTINGS = ("recovery_epochs", "learning_rate", "per_device_train_batch_size", "seed")


@dataclass
class CompressArguments:
    """The pipeline: which stages, each stage's settings, the recovery training, the report and the budget.

    Args:
        teacher_model_name_or_path (`str`): teacher fine-tuned on the task (see scripts/finetune_teacher.py).
        output_dir (`str`): one folder per stage goes in here.
        stages (`str`, *optional*, defaults to `"distill,vocab,int8"`): comma-separated subset of distill,
            prune, factorize, qat, vocab, int8, in that order.
        student_model_name_or_path (`str`, *optional*): the model the chain starts from (a distilled student); with
            no distill stage it defaults to the teacher itself.
        student_num_layers (`int`, *optional*, defaults to 3): the distill stage's student takes this many teacher
            layers (uniform), then learns from the teacher.
        target_sparsity, target_params (*optional*): the prune stage's target: the fraction of the encoder's
            attention and feed-forward parameters to remove, or the parameters of the pruned model; or instead
            `heads_per_layer` / `neurons_per_layer`: the heads and FFN neurons every layer keeps (`"4"` for all
            layers, or `"8,6,4,4"` one per layer; one kind alone keeps every unit of the other).
        prune_steps (`int`, *optional*, defaults to 1): prune a little, recover, repeat (the iterative schedule).
        importance_rows (`int`, *optional*, defaults to 512): training rows that rank heads and neurons.
        rank, energy (*optional*): the factorize stage's rank for every linear layer of the encoder, or the fraction
            of the squared singular values each layer keeps (one of them); `embedding_rank` also factorizes the word
            embeddings (ALBERT-style).
        vocab_splits (`str`, *optional*, defaults to `"train"`): the splits whose text decides the kept word pieces
            (`"train,validation"` keeps every dev token); `vocab_corpus` adds a text file (one text per line);
            `keep_characters` keeps every single-character piece so that unseen words split instead of being
            `[UNK]`.
        int8_mode (`str`, *optional*, defaults to `"dynamic"`): ONNX Runtime dynamic INT8, or static with calibration
            on `calibration_rows` training rows; `int8_per_channel` gives every output channel its own weight scale
            (the default, except after the qat stage, whose fake quantization is per tensor as ONNX Runtime's default;
            per-tensor scales lost 1.43 points on MRPC and STS-B after plain distillation, per-channel 0.53 and 0.82);
            `int8_embeddings` also quantizes the embedding lookups (off: they stay float32, about 4x their INT8
            bytes, and with per-channel weights SST-2 and MRPC lost 0.8 and 1.2 points less, STS-B the same); the
            variants side by side: `scripts/checks/compare_int8.py`, docs/int8/. `int8_reduce_range` stores the
            linear layers' weights in [-64, 64] (ONNX Runtime's `reduce_range`): on x86 CPUs without VNNI, ONNX
            Runtime's INT8 kernel adds pairs of products in saturating 16-bit integers, which full-range weights can
            overflow; default: on exactly when this CPU is such a one (`onnx_runtime.x86_without_vnni`), so that the
            metrics measured here are the model's; the qat stage then trains for the same 7-bit weights.
        recovery_teacher (`str`, *optional*, defaults to `"teacher"`): who the prune and factorize stages recover
            from: the fine-tuned teacher, or `"input"`: the stage's own input model, the one before pruning or
            factorizing (the seed's "distil from the unpruned model"; cheaper when the input is smaller).
        recovery_epochs, learning_rate, per_device_train_batch_size, seed: the training of every training stage
            (logit distillation from the teacher: 0.5 CE + 0.5 soft targets at T = 2, the trainer's defaults).
        report (`str`, *optional*): write the report here (markdown; .json and .png next to it).
        repeats (`int`, *optional*, defaults to 20): timed forwards per model and batch size.
        max_bytes, max_latency_ms (*optional*): pick the best model within these bytes on disk / batch-1 latency.
    """

    teacher_model_name_or_path: str = field(metadata={"help": "Teacher fine-tuned on the task."})
    output_dir: str = field(metadata={"help": "One folder per stage goes in here."})
    stages: str = field(
        default="distill,vocab,int8", metadata={"help": f"Comma-separated subset of {','.join(STAGES)}."}
    )
    student_model_name_or_path: str | None = field(
        default=None, metadata={"help": "Start from this model (default: the distill stage's student or the teacher)."}
    )
    student_num_layers: int = field(default=3, metadata={"help": "The distill stage's student depth."})
    target_sparsity: float | None = field(default=None, metadata={"help": "prune: fraction of encoder params to cut."})
    target_params: int | None = field(default=None, metadata={"help": "prune: parameters of the pruned model."})
    heads_per_layer: str | None = field(default=None, metadata={"help": "prune: heads kept, '4' or '8,6,4,4'."})
    neurons_per_layer: str | None = field(default=None, metadata={"help": "prune: FFN neurons kept per layer."})
    prune_steps: int = field(default=1, metadata={"help": "prune: cut and recover in this many steps."})
    importance_rows: int = field(default=512, metadata={"help": "prune: training rows that rank heads and neurons."})
    rank: int | None = field(default=None, metadata={"help": "factorize: rank of every encoder linear layer."})
    energy: float | None = field(default=None, metadata={"help": "factorize: kept share of squared singular values."})
    embedding_rank: int | None = field(default=None, metadata={"help": "factorize: also the word embeddings."})
    vocab_splits: str = field(default="train", metadata={"help": "vocab: splits whose text decides the kept pieces."})
    vocab_corpus: str | None = field(default=None, metadata={"help": "vocab: also this text file, one per line."})
    keep_characters: bool = field(default=True, metadata={"help": "vocab: keep every single-character piece."})
    int8_mode: str = field(default="dynamic", metadata={"help": f"int8: {' or '.join(INT8_MODES)}."})
    int8_per_channel: bool | None = field(
        default=None, metadata={"help": "int8: one weight scale per output channel (default: on, off after qat)."}
    )
    int8_embeddings: bool = field(default=True, metadata={"help": "int8: also quantize the embedding lookups."})
    int8_reduce_range: bool | None = field(
        default=None, metadata={"help": "int8: 7-bit weights (default: on for x86 CPUs without VNNI, else off)."}
    )
    calibration_rows: int = field(default=256, metadata={"help": "int8 static: calibration training rows."})
    recovery_teacher: str = field(
        default="teacher", metadata={"help": "prune/factorize: recover from the 'teacher' or the stage's 'input'."}
    )
    recovery_epochs: float = field(default=1.0, metadata={"help": "Epochs of every training stage."})
    learning_rate: float = field(default=1e-4, metadata={"help": "Learning rate of every training stage."})
    per_device_train_batch_size: int = field(default=32, metadata={"help": "Batch size of every training stage."})
    seed: int = field(default=42, metadata={"help": "Seed of every training stage."})
    report: str | None = field(default=None, metadata={"help": "Write the report here (.md; .json/.png next to it)."})
    repeats: int = field(default=20, metadata={"help": "Timed forwards per model and batch size."})
    max_bytes: float | None = field(default=None, metadata={"help": "Pick the best model of at most these bytes."})
    max_latency_ms: float | None = field(default=None, metadata={"help": "...and at most this batch-1 latency."})

    def __post_init__(self):
        self.stage_list = [s.strip() for s in self.stages.split(",") if s.strip()]
        unknown = [s for s in self.stage_list if s not in STAGES]
        if unknown or not self.stage_list:
            raise ValueError(f"--stages: unknown {unknown} (choose from {', '.join(STAGES)})")
        if self.stage_list != sorted(self.stage_list, key=STAGES.index) or len(set(self.stage_list)) < len(
            self.stage_list
        ):
            raise ValueError(
                f"--stages {self.stages}: each stage at most once, in the order {' -> '.join(STAGES)} (training "
                "stages read the teacher's vocabulary, so vocab follows them; int8 leaves PyTorch, so it is last)"
            )
        self.layer_counts = {name: parse_counts(getattr(self, name), name)
                             for name in ("heads_per_layer", "neurons_per_layer")}  # fmt: skip
        by_counts = any(v is not None for v in self.layer_counts.values())
        given = (self.target_sparsity is not None) + (self.target_params is not None) + by_counts
        if "prune" in self.stage_list and given != 1:
            raise ValueError(
                "the prune stage needs exactly one of --target_sparsity, --target_params and per-layer counts "
                "(--heads_per_layer / --neurons_per_layer)"
            )
        if by_counts and self.prune_steps != 1:
            raise ValueError("--prune_steps > 1 needs a global target (--target_sparsity or --target_params)")
        if self.target_sparsity is not None and not 0 <= self.target_sparsity < 1:
            raise ValueError(f"--target_sparsity must be in [0, 1), got {self.target_sparsity}")
        if self.target_params is not None and self.target_params <= 0:
            raise ValueError(f"--target_params must be positive, got {self.target_params}")
        if "factorize" in self.stage_list and (self.rank is None) == (self.energy is None):
            raise ValueError("the factorize stage needs exactly one of --rank and --energy")
        if self.rank is not None and self.rank < 1:
            raise ValueError(f"--rank must be at least 1, got {self.rank}")
        if self.embedding_rank is not None and self.embedding_rank < 1:
            raise ValueError(f"--embedding_rank must be at least 1, got {self.embedding_rank}")
        if self.energy is not None and not 0 < self.energy <= 1:
            raise ValueError(f"--energy must be in (0, 1], got {self.energy}")
        if self.int8_per_channel is None:
            self.int8_per_channel = "qat" not in self.stage_list
        elif self.int8_per_channel and "qat" in self.stage_list:
            raise ValueError(
                "--int8_per_channel after the qat stage: QAT trains against ONNX Runtime's per-tensor INT8 weights "
                "(qat scheme onnx_dynamic), so per-channel INT8 would not be the model it was trained for; drop the "
                "flag (per-tensor is the default after qat)"
            )
        if self.int8_reduce_range is None:
            from bertdistill.compression.onnx_runtime import x86_without_vnni

            self.int8_reduce_range = x86_without_vnni()
        if self.recovery_teacher not in RECOVERY_TEACHERS:
            raise ValueError(f"--recovery_teacher must be one of {RECOVERY_TEACHERS}, got {self.recovery_teacher!r}")
        if self.int8_mode not in INT8_MODES:
            raise ValueError(f"--int8_mode must be one of {INT8_MODES}, got {self.int8_mode!r}")
        if self.vocab_corpus is not None:
            path = Path(self.vocab_corpus)
            if not path.is_file():
                raise FileNotFoundError(f"--vocab_corpus not found: {path}")
            if not path.read_text(encoding="utf-8").strip():
                raise ValueError(f"--vocab_corpus {path} is empty")
        for name in ("prune_steps", "importance_rows", "calibration_rows", "repeats", "per_device_train_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be at least 1, got {getattr(self, name)}")
        for name in ("recovery_epochs", "learning_rate", "max_bytes", "max_latency_ms"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"--{name} must be positive, got {value}")


class Pipeline:
    """The stages of one run, sharing the task, the teacher, the tokenized data and the recovery settings."""

    def __init__(self, args: CompressArguments, run_args: GlueRunArguments):
        self.args, self.run_args = args, run_args
        self.task = get_task(run_args.task_name)
        self.output_dir = Path(args.output_dir)
        self.teacher = load_teacher(args.teacher_model_name_or_path, self.task)
        self.tokenizer = AutoTokenizer.from_pretrained(args.teacher_model_name_or_path)
        check_max_seq_length(run_args.max_seq_length, self.tokenizer, teacher=self.teacher)
        self.train_dataset, eval_datasets = load_glue_datasets(self.task, self.tokenizer, run_args)
        self.eval_dataset = next(iter(eval_datasets.values()))

    def folder(self, index: int, stage: str) -> Path:
        return self.output_dir / f"{index}-{stage}"

    def run(self) -> list[Path]:
        """Run (or skip, when finished before with the same settings) every stage; the stage folders in order."""
        source = Path(self.args.student_model_name_or_path or self.args.teacher_model_name_or_path)
        done, chain = [], [{"source": str(source), **self.settings("common")}]
        for index, stage in enumerate(self.args.stage_list, start=1):
            final = self.folder(index, stage)
            chain = [*chain, {"stage": stage, **self.settings(stage)}]
            partial = final.with_name(final.name + ".partial")
            if (final / DONE_FILE).is_file():
                self.check_same_settings(final, chain)
                logger.info("Stage %s finished before: %s", stage, final)
            else:
                if partial.exists() and stage not in TRAINING_STAGES:
                    shutil.rmtree(partial)  # only a training stage has something to resume (its checkpoints)
                if partial.exists():
                    self.check_same_settings(partial, chain)
                partial.mkdir(parents=True, exist_ok=True)
                (partial / SETTINGS_FILE).write_text(json.dumps(chain, indent=2) + "\n")
                logger.info("== stage %d/%d: %s (%s -> %s)", index, len(self.args.stage_list), stage, source, final)
                start = time.perf_counter()
                details = getattr(self, f"stage_{stage}")(source, partial) or {}
                record = {"stage": stage, "source": str(source), "seconds": time.perf_counter() - start, **details}
                (partial / DONE_FILE).write_text(json.dumps(record, indent=2) + "\n")
                for checkpoint in partial.glob("checkpoint-*"):
                    shutil.rmtree(checkpoint)
                if final.exists():
                    shutil.rmtree(final)
                partial.rename(final)
            done.append(final)
            source = final
        return done

    def settings(self, stage: str) -> dict:
        """What a stage's output depends on (with every earlier stage's, a finished folder is reused only when all
        of them are the same)."""
        args, run_args = self.args, self.run_args
        names = {
            "common": ("teacher_model_name_or_path",),
            "distill": ("student_num_layers",),
            "prune": ("target_sparsity", "target_params", "prune_steps", "importance_rows"),
            "factorize": ("rank", "energy", "embedding_rank"),
            "qat": (),
            "vocab": ("vocab_splits", "vocab_corpus", "keep_characters"),
            "int8": ("int8_mode", "int8_per_channel", "int8_embeddings", "calibration_rows"),
        }[stage]
        values = {name: getattr(args, name) for name in names}
        if stage == "prune":  # absent unless given: folders made before these flags keep their settings
            values |= {name: v for name in ("heads_per_layer", "neurons_per_layer") if (v := getattr(args, name))}
        if stage in ("prune", "factorize") and args.recovery_teacher != "teacher":  # absent: folders made before it
            values["recovery_teacher"] = args.recovery_teacher
        if stage in ("qat", "int8") and args.int8_reduce_range:  # absent when off: folders made before the flag
            values["int8_reduce_range"] = True
        if stage in TRAINING_STAGES:
            values |= {name: getattr(args, name) for name in TRAINING_SETTINGS}
            values |= {"task_name": run_args.task_name, "max_seq_length": run_args.max_seq_length,
                       "max_train_samples": run_args.max_train_samples}  # fmt: skip
        return values

    def check_same_settings(self, folder: Path, chain: list[dict]) -> None:
        saved = json.loads((folder / SETTINGS_FILE).read_text()) if (folder / SETTINGS_FILE).is_file() else None
        if saved != chain:
            raise ValueError(
                f"{folder} was made with other settings ({saved}) than this run's ({chain}); give another "
                "--output_dir, or delete that folder and the later stages' to redo them"
            )

    # ---- the stages: each reads `source` and writes a whole checkpoint (or ONNX folder) into `out` ---------------

    def stage_distill(self, source: Path, out: Path) -> dict:
        torch.manual_seed(self.args.seed)
        student = build_student(self.load(source), num_layers=self.args.student_num_layers, selection="uniform")
        return self.recover(student, out)

    def stage_prune(self, source: Path, out: Path) -> dict:
        from bertdistill.compression.importance import compute_importance
        from bertdistill.compression.pruning import apply_plan, plan_pruning, prunable_parameters

        model = self.load(source)
        args, steps, history = self.args, self.args.prune_steps, []
        start = count_parameters(model)
        by_counts = any(v is not None for v in args.layer_counts.values())  # one step (refused otherwise)
        if not by_counts:
            # Both targets as the parameter count of the final model; each step removes an equal share of the cut.
            final = args.target_params
            if final is None:
                final = start - round(args.target_sparsity * prunable_parameters(model))
            if final > start:
                raise ValueError(f"--target_params {final} is more than the {start} parameters of {source}")
        for step in range(1, steps + 1):
            target = {} if by_counts else {"target_params": round(start - (start - final) * step / steps)}
            importance = compute_importance(model, self.importance_batches(), progress=False)
            plan = plan_pruning(model, importance, **(args.layer_counts if by_counts else target))
            unpruned, model = model, apply_plan(model, plan)
            step_dir = out if step == steps else out / f"step-{step}"
            recovered = self.recover(model, step_dir, teacher=self.recovery_teacher(unpruned))
            model = self.load(step_dir)
            history.append({"step": step, **target, "parameters": count_parameters(model), **recovered})
        return {"plan": plan.to_dict(), "steps": history}

    def stage_factorize(self, source: Path, out: Path) -> dict:
        from bertdistill.compression.low_rank import factorize

        model = self.load(source)
        factorized = factorize(model, rank=self.args.rank, energy=self.args.energy,
                               embedding_rank=self.args.embedding_rank)  # fmt: skip
        return self.recover(factorized, out, teacher=self.recovery_teacher(model))

    def stage_qat(self, source: Path, out: Path) -> dict:
        from bertdistill.compression.qat import convert_qat, prepare_qat

        scheme = "onnx_dynamic_reduce_range" if self.args.int8_reduce_range else "onnx_dynamic"  # what int8 will be
        model = prepare_qat(self.load(source), scheme=scheme)
        details = self.recover(model, out, save=False)
        convert_qat(self.trained).save_pretrained(out)
        self.tokenizer_of(source).save_pretrained(out)
        return details

    def stage_vocab(self, source: Path, out: Path) -> dict:
        from bertdistill.compression.vocabulary import count_unknown, prune_vocabulary, read_corpus_file, task_corpus

        splits = [s.strip() for s in self.args.vocab_splits.split(",") if s.strip()]
        splits = [self.task.eval_splits[0] if s in ("dev", "validation") else s for s in splits]
        texts = task_corpus(self.task.name, self.run_args.glue_dir, splits)
        if self.args.vocab_corpus:
            texts += read_corpus_file(self.args.vocab_corpus)
        model, tokenizer = self.load(source), self.tokenizer_of(source)
        pruned, pruned_tokenizer, report = prune_vocabulary(model, tokenizer, texts,
                                                            keep_characters=self.args.keep_characters)  # fmt: skip
        out.mkdir(parents=True, exist_ok=True)
        pruned.save_pretrained(out)
        pruned_tokenizer.save_pretrained(out)
        dev_texts = task_corpus(self.task.name, self.run_args.glue_dir, [self.task.eval_splits[0]])
        unknown, total = count_unknown(pruned_tokenizer, dev_texts)
        return {"vocabulary": report.to_dict() | {"splits": splits}, "dev_unknown_tokens": unknown,
                "dev_tokens": total}  # fmt: skip

    def stage_int8(self, source: Path, out: Path) -> dict:
        from bertdistill.compression.onnx_runtime import export_onnx, quantize_onnx

        model, tokenizer = self.load(source), self.tokenizer_of(source)
        float_dir = out / "float"
        export_onnx(model, tokenizer, float_dir)
        calibration = None
        if self.args.int8_mode == "static":
            calibration = calibration_batches(
                self.task, self.run_args.glue_dir, tokenizer, self.args.calibration_rows, self.run_args.max_seq_length
            )
        quantize_onnx(
            float_dir,
            out,
            mode=self.args.int8_mode,
            calibration=calibration,
            per_channel=self.args.int8_per_channel,
            op_types=int8_op_types(self.args.int8_embeddings),
            reduce_range=self.args.int8_reduce_range,
        )
        return {"mode": self.args.int8_mode, "per_channel": self.args.int8_per_channel,
                "embeddings": self.args.int8_embeddings, "reduce_range": self.args.int8_reduce_range,
                "parameters": count_parameters(model)}  # fmt: skip

    # ---- shared by the stages --------------------------------------------------------------------------------------

    def load(self, folder: Path):
        return AutoModelForSequenceClassification.from_pretrained(folder)

    def tokenizer_of(self, folder: Path):
        has_tokenizer = (folder / "tokenizer_config.json").is_file()
        return AutoTokenizer.from_pretrained(folder) if has_tokenizer else self.tokenizer

    def importance_batches(self):
        rows = self.train_dataset.select(range(min(self.args.importance_rows, len(self.train_dataset))))
        collate = DataCollatorWithPadding(self.tokenizer)
        columns = [c for c in rows.column_names if c in ("input_ids", "attention_mask", "token_type_ids", "label")]
        rows = rows.select_columns(columns)
        return [collate([rows[i] for i in range(s, min(s + 32, len(rows)))]) for s in range(0, len(rows), 32)]

    def recovery_teacher(self, stage_input):
        """The model a prune or factorize stage recovers from (`--recovery_teacher`)."""
        return stage_input if self.args.recovery_teacher == "input" else self.teacher

    def recover(self, student, out: Path, save: bool = True, teacher=None) -> dict:
        """Distil `student` from `teacher` (default: the fine-tuned teacher) on the task (logit KD, the trainer's
        defaults) into `out`, resuming from the last checkpoint there; the eval metrics of the result."""
        args = self.args
        out.mkdir(parents=True, exist_ok=True)
        config = DistillationTrainingConfig(
            output_dir=str(out), num_train_epochs=args.recovery_epochs, learning_rate=args.learning_rate,
            per_device_train_batch_size=args.per_device_train_batch_size, per_device_eval_batch_size=64,
            seed=args.seed, save_steps=50, save_total_limit=1, logging_steps=25, report_to=[],
        )  # fmt: skip
        set_seed(args.seed)
        trainer = DistillationTrainer(
            model=student, teacher_model=self.teacher if teacher is None else teacher, args=config,
            train_dataset=self.train_dataset, eval_dataset=self.eval_dataset, processing_class=self.tokenizer,
            compute_metrics=compute_metrics_for(self.task),
        )  # fmt: skip
        result = trainer.train(resume_from_checkpoint=get_last_checkpoint(str(out)))
        self.trained = trainer.student
        if save:
            trainer.save_model()
            trainer.save_metrics("train", result.metrics, combined=False)
        metrics = trainer.evaluate()
        return {"train_seconds": result.metrics.get("train_runtime"), "eval": metrics}


# ---- the report ----------------------------------------------------------------------------------------------------


def parse_counts(value: str | None, flag: str) -> int | list[int] | None:
    """`"4"` -> 4 (every layer), `"8,6,4,4"` -> one count per layer; refuses anything but positive integers."""
    if value is None:
        return None
    try:
        counts = [int(v) for v in str(value).split(",")]
    except ValueError:
        raise ValueError(f"--{flag} takes a count or comma-separated counts, got {value!r}") from None
    if any(c < 1 for c in counts):
        raise ValueError(f"--{flag}: every layer keeps at least 1, got {value!r}")
    return counts[0] if len(counts) == 1 else counts


def calibration_batches(task, glue_dir, tokenizer, rows: int, max_length: int) -> list[dict]:
    """Static INT8's calibration inputs: the first `rows` training rows, tokenized in batches of 16 (numpy)."""
    raw = load_glue_split(task, "train", glue_dir)
    raw = raw.select(range(min(rows, len(raw))))
    texts = [raw[c] for c in task.text_columns]
    return [dict(tokenizer(*(col[s : s + 16] for col in texts), truncation=True, padding=True, return_tensors="np",
                           max_length=max_length))
            for s in range(0, len(raw), 16)]  # fmt: skip


def int8_op_types(embeddings: bool) -> tuple[str, ...] | None:
    """ONNX operator types to quantize: every type ONNX Runtime can (None), or the matrix products only, leaving the
    embedding lookups (`Gather`) in float32."""
    return None if embeddings else ("MatMul",)


def is_onnx(folder: Path) -> bool:
    return any(folder.glob("*.onnx"))


def load_for_report(folder: Path):
    if is_onnx(folder):
        from bertdistill.compression.onnx_runtime import OnnxSequenceClassifier

        return OnnxSequenceClassifier(folder)
    return AutoModelForSequenceClassification.from_pretrained(folder).eval()


def report_entries(
    teacher: Path, folders: list[Path], student: Path | None = None
) -> list[tuple[str, Path, str | None]]:
    """(row name, folder, the row it was made from) for the teacher, the given starting student (if any) and every
    stage output; the int8 stage also shows its float ONNX export, so that what ONNX Runtime gains and what INT8
    gains are apart."""
    entries, previous = [("teacher", teacher, None)], "teacher"
    if student is not None:
        entries.append(("student", student, "teacher"))
        previous = "student"
    for folder in folders:
        if folder.name.endswith("-int8") and (folder / "float").is_dir():
            entries.append((f"{folder.name}/float", folder / "float", previous))
        entries.append((folder.name, folder, previous))
        previous = folder.name
    return entries


def stage_record(folder: Path) -> dict:
    for candidate in (folder, folder.parent):
        if (candidate / DONE_FILE).is_file():
            return json.loads((candidate / DONE_FILE).read_text())
    return {}


def measure(entries: list[tuple[str, Path, str | None]], task, run_args: GlueRunArguments, repeats: int) -> list[dict]:
    """One row per model: dev metric, parameters, bytes on disk, latency at batch 1 and 32 (every model interleaved
    in one run), and against the row it was made from: points of the metric, times smaller, times faster."""
    from bertdistill.glue_run import tokenize_split

    dev = load_glue_split(task, task.eval_splits[0], run_args.glue_dir)
    sentences = dev.select(range(min(32, len(dev))))
    models, feeds, rows = {}, {1: {}, 32: {}}, []
    for name, folder, previous in entries:
        model, tokenizer = load_for_report(folder), AutoTokenizer.from_pretrained(folder)
        models[name] = model
        for n in feeds:
            texts = (list(sentences[c][:n]) for c in task.text_columns)
            encoded = tokenizer(*texts, truncation=True, max_length=run_args.max_seq_length, padding=True,
                                return_tensors="pt")  # fmt: skip
            feeds[n][name] = dict(encoded)
        tokenized = tokenize_split(dev, task, tokenizer, run_args.max_seq_length)
        record = stage_record(folder) if previous else {}
        if is_onnx(folder):
            from bertdistill.compression.onnx_runtime import evaluate_onnx, onnx_size

            metrics, size = evaluate_onnx(model, tokenized, tokenizer, task), onnx_size(folder)
            parameters = record.get("parameters")
        else:
            metrics, size = evaluate_model(model, tokenized, tokenizer, task, use_cpu=True), size_on_disk(folder)
            parameters = count_parameters(model)
        rows.append({"run": name, "folder": str(folder), "made_from": previous, "parameters": parameters,
                     "bytes": size, "size_mb": size / 1e6, "seconds": record.get("seconds"),
                     **{m: metrics[f"eval_{m}"] for m in task.metrics}})  # fmt: skip
    by_name = {row["run"]: row for row in rows}
    for n, inputs in feeds.items():
        timing = measure_side_by_side(models, inputs_by_model=inputs, repeats=repeats)
        for row in rows:
            row[f"latency_b{n}_ms"] = timing.median(row["run"]) * 1e3
            row[f"speedup_b{n}"] = timing.speedup(row["run"], over="teacher")
            if row["made_from"]:
                row[f"faster_than_source_b{n}"] = timing.speedup(row["run"], over=row["made_from"])
    teacher = rows[0]
    for row in rows:
        row["score"] = sum(row[m] for m in task.metrics) / len(task.metrics)
        row["retention"] = row["score"] / teacher["score"]
        row["bytes_ratio"] = teacher["bytes"] / row["bytes"]
        if row["made_from"]:
            source = by_name[row["made_from"]]
            row["points_vs_source"] = 100 * (row["score"] - source["score"])
            row["smaller_than_source"] = source["bytes"] / row["bytes"]
    return rows


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    model_lines = [line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")] \
        if Path("/proc/cpuinfo").is_file() else []  # fmt: skip
    if model_lines:
        cpu = model_lines[0].split(":", 1)[1].strip()
    return f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, torch {torch.__version__}"


def markdown(report: dict) -> str:
    task, rows = report["task"], report["rows"]
    metrics = report["metrics"]
    lines = [
        f"# Compression pipeline: {task}",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Machine: {report['machine']}. Dev metrics on the full {task} dev split; latency: median forward on "
        f"{task} dev sentences (length <= {report['max_seq_length']}), every model interleaved in one run, "
        f"{report['repeats']} repeats; a speedup is the median over the repeats of the teacher's time over the "
        "model's in the same repeat.",
        "",
        "| model | " + " | ".join(metrics) + " | retention | params (M) | size (MB) | smaller | b1 ms | b32 ms | "
        "speedup b1 | speedup b32 | stage time (s) |",
        "|---" * (len(metrics) + 10) + "|",
    ]
    for row in rows:
        params = f"{row['parameters'] / 1e6:.2f}" if row["parameters"] else "n/a"
        seconds = f"{row['seconds']:.0f}" if row.get("seconds") is not None else ""
        lines.append(
            f"| {row['run']} | " + " | ".join(f"{row[m]:.4f}" for m in metrics)
            + f" | {row['retention']:.1%} | {params} | {row['size_mb']:.1f} | {row['bytes_ratio']:.2f}x | "
            f"{row['latency_b1_ms']:.2f} | {row['latency_b32_ms']:.1f} | {row['speedup_b1']:.2f}x | "
            f"{row['speedup_b32']:.2f}x | {seconds} |"
        )  # fmt: skip
    lines += [
        "",
        "What each stage cost and saved, against the model it was made from (speedups paired in the same run):",
        "",
        "| stage | made from | metric change (points) | smaller | faster b1 | faster b32 |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows[1:]:
        lines.append(
            f"| {row['run']} | {row['made_from']} | {row['points_vs_source']:+.2f} | "
            f"{row['smaller_than_source']:.2f}x | {row['faster_than_source_b1']:.2f}x | "
            f"{row['faster_than_source_b32']:.2f}x |"
        )
    lines += ["", f"![metric vs latency and size]({Path(report['plot']).name})"]
    if report.get("chosen"):
        lines += ["", f"Chosen within the budget ({report['budget']}): **{report['chosen']}**."]
    return "\n".join(lines) + "\n"


def write_report(path: str, rows: list[dict], args: CompressArguments, run_args: GlueRunArguments, argv) -> dict:
    from bertdistill.plots import pareto_plot

    task = get_task(run_args.task_name)
    output = Path(path)
    output.parent.mkdir(parents=True, exist_ok=True)
    plot = output.with_suffix(".png")
    pareto_plot(rows, plot, title=f"{task.name}: compression stages", metric_key="score",
                metric_label=f"dev {'/'.join(task.metrics)} (mean)", latency_key="latency_b1_ms")  # fmt: skip
    report = {"task": task.name, "command": "python scripts/compress.py " + " ".join(argv), "machine": machine(),
              "metrics": list(task.metrics), "max_seq_length": run_args.max_seq_length, "repeats": args.repeats,
              "arguments": {k: v for k, v in asdict(args).items()}, "rows": rows, "plot": str(plot)}  # fmt: skip
    if args.max_bytes is not None or args.max_latency_ms is not None:
        report["budget"] = f"bytes <= {args.max_bytes}, batch-1 latency <= {args.max_latency_ms} ms"
        report["chosen"] = choose_budget(rows[1:], args)["run"]
    output.write_text(markdown(report))
    output.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def choose_budget(rows: list[dict], args: CompressArguments) -> dict:
    return choose_within_budget(rows, "score", {"bytes": args.max_bytes, "latency_b1_ms": args.max_latency_ms},
                                lambda row: row["run"])  # fmt: skip


def check_ranks(args: CompressArguments) -> None:
    """Refuse a factorization rank no linear layer of the model can have, before any stage runs (each layer keeps at
    most min(in, out) components; every encoder linear layer has the hidden size on one side)."""
    if args.rank is None and args.embedding_rank is None:
        return
    from transformers import AutoConfig

    source = args.student_model_name_or_path or args.teacher_model_name_or_path
    hidden = AutoConfig.from_pretrained(source, trust_remote_code=True).hidden_size
    for flag in ("rank", "embedding_rank"):
        value = getattr(args, flag)
        if value is not None and value > hidden:
            raise ValueError(f"--{flag} {value} is larger than any layer allows: the model's hidden size is {hidden}")


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    parser = HfArgumentParser((CompressArguments, GlueRunArguments))
    args, run_args = parse_args(parser, argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    task = get_task(run_args.task_name)
    check_glue_dir(task, run_args.glue_dir, ("train", task.eval_splits[0]))
    check_model_path(args.teacher_model_name_or_path, "--teacher_model_name_or_path")
    if args.student_model_name_or_path is not None:
        check_model_path(args.student_model_name_or_path, "--student_model_name_or_path")
    check_ranks(args)
    pipeline = Pipeline(args, run_args)
    folders = pipeline.run()
    student = Path(args.student_model_name_or_path) if args.student_model_name_or_path else None
    entries = report_entries(Path(args.teacher_model_name_or_path), folders, student)
    rows = measure(entries, task, run_args, args.repeats)
    report = {"rows": rows}
    if args.report:
        report = write_report(args.report, rows, args, run_args, argv)
    elif args.max_bytes is not None or args.max_latency_ms is not None:
        report["chosen"] = choose_budget(rows[1:], args)["run"]
    for row in rows:
        print(f"{row['run']}: score {row['score']:.4f} ({row['retention']:.1%}), {row['size_mb']:.1f} MB, "
              f"b1 {row['latency_b1_ms']:.2f} ms ({row['speedup_b1']:.2f}x)")  # fmt: skip
    if report.get("chosen"):
        print(f"chosen within the budget: {report['chosen']}")
    return report


if __name__ == "__main__":
    run_script(main)
