#!/usr/bin/env python
"""Distill a fine-tuned teacher into a smaller student on a GLUE task.

    accelerate launch scripts/distill_glue.py --method kd --task_name rte \
        --teacher_model_name_or_path teacher-rte --student_num_layers 3 \
        --glue_dir ../shared/glue_data --output_dir student-rte

Writes a plain student checkpoint, eval_results.json and a model card (README.md) into --output_dir. Runs unchanged
under `accelerate launch` with any number of processes; a single .json/.yaml argument holds the same options.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field

from transformers import AutoTokenizer, HfArgumentParser
from transformers.trainer_utils import set_seed

from bertdistill import get_method
from bertdistill.attention import stop_recording_attention_scores
from bertdistill.glue_run import (
    GlueRunArguments,
    build_student_from_args,
    check_max_seq_length,
    compute_metrics_for,
    evaluate_glue,
    load_for_task,
    load_glue_datasets,
    load_teacher,
    method_from_argv,
    parse_args,
    preflight,
    run_script,
)
from bertdistill.student import check_same_vocabulary
from bertdistill.trainers import METHODS
from glue_tasks import get_task

logger = logging.getLogger(__name__)


@dataclass
class DistillArguments:
    """Method, teacher and how the student is made (exactly one of the four `student_*` options; none for
    `--method dynabert`, whose student is a copy of the whole teacher).

    Args:
        method (`str`, *optional*, defaults to `"kd"`): distillation method.
        teacher_model_name_or_path (`str`): teacher fine-tuned on the task (see scripts/finetune_teacher.py).
        student_num_layers (`int`, *optional*): student takes this many teacher layers, picked by
            `student_layer_selection`.
        student_layer_selection (`str`, *optional*): `uniform` (evenly spread, top kept; 6 -> 3: 1, 3, 5),
            `first` (0, 1, 2) or `alternate` (0, 2, 4). Defaults to the method's own: `first` for pkd (the paper),
            `alternate` for distilbert (the paper), `uniform` otherwise.
        student_layers (`str`, *optional*): student takes these 0-based teacher layers, e.g. `"0,2,5"`.
        student_config (`str`, *optional*): random-init student from this config.json (teacher's vocabulary).
        student_model_name_or_path (`str`, *optional*): student from this checkpoint (teacher's vocabulary).
        student_hidden_size, student_num_attention_heads, student_intermediate_size (`int`, *optional*): a narrower
            random-init student of `student_num_layers` layers (the teacher's config otherwise), e.g. for TinyBERT.
        student_layers_from (`str`, *optional*): take the student's layers (with `student_num_layers` or
            `student_layers`) and embeddings from this pre-trained, not fine-tuned, encoder instead of the teacher,
            with a freshly initialised task head: Patient-KD's initialisation from BERT's first layers. It must
            share the teacher's vocabulary.
    """

    teacher_model_name_or_path: str = field(metadata={"help": "Teacher fine-tuned on the task."})
    method: str = field(
        default="kd",
        metadata={"help": f"Distillation method: {', '.join(METHODS)} (finetune = no teacher, the baseline)."},
    )
    student_num_layers: int | None = field(
        default=None, metadata={"help": "Take this many teacher layers, picked by --student_layer_selection."}
    )
    student_layer_selection: str | None = field(
        default=None,
        metadata={"help": "uniform (6->3: 1,3,5), first (0,1,2) or alternate (0,2,4); default: the method's own."},
    )
    student_layers: str | None = field(default=None, metadata={"help": "Take these 0-based teacher layers: '1,3,5'."})
    student_config: str | None = field(default=None, metadata={"help": "Random-init student from this config.json."})
    student_model_name_or_path: str | None = field(
        default=None, metadata={"help": "Student from this checkpoint (same vocabulary as the teacher)."}
    )
    student_hidden_size: int | None = field(
        default=None, metadata={"help": "Random-init student of --student_num_layers layers this wide."}
    )
    student_num_attention_heads: int | None = field(default=None, metadata={"help": "Its attention heads."})
    student_intermediate_size: int | None = field(default=None, metadata={"help": "Its feed-forward size."})
    student_layers_from: str | None = field(
        default=None,
        metadata={"help": "Take the student's layers from this pre-trained encoder (fresh head), not the teacher."},
    )


def main(argv: list[str] | None = None) -> dict[str, float]:
    argv = sys.argv[1:] if argv is None else argv
    method = get_method(method_from_argv(argv, default="kd"))
    parser = HfArgumentParser((DistillArguments, GlueRunArguments, method.config_class))
    args, run_args, config = parse_args(parser, argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)

    task = get_task(run_args.task_name)
    # Some methods run in stages (TinyBERT: intermediate, then prediction); every stage's folder is checked first.
    stages = config.split_stages()
    resumes = [
        preflight(task, run_args, stage.output_dir, config.resume_from_checkpoint if stage is stages[-1] else None)
        for stage in stages
    ]
    teacher = load_teacher(args.teacher_model_name_or_path, task)
    set_seed(config.seed)
    student_arguments = ("num_layers", "layers", "config", "model_name_or_path", "hidden_size", "num_attention_heads",
                         "intermediate_size")  # fmt: skip
    if method.full_student and all(getattr(args, f"student_{name}") is None for name in student_arguments):
        args.student_num_layers = teacher.config.num_hidden_layers  # DynaBERT: a copy of the whole teacher
    source = teacher
    if args.student_layers_from is not None:
        if args.student_num_layers is None and args.student_layers is None:
            raise ValueError("--student_layers_from needs --student_num_layers or --student_layers (which layers)")
        source = load_for_task(args.student_layers_from, task, "--student_layers_from")
        check_same_vocabulary(teacher.config, source.config)
    student = build_student_from_args(source, args, method.layer_selection)
    student.config.finetuning_task = task.name
    tokenizer = AutoTokenizer.from_pretrained(args.teacher_model_name_or_path)
    check_max_seq_length(run_args.max_seq_length, tokenizer, teacher=teacher, student=student)

    train_dataset, eval_datasets = load_glue_datasets(task, tokenizer, run_args)
    for stage, resume in zip(stages, resumes):
        finished = stage is not stages[-1] and os.path.isfile(os.path.join(stage.output_dir, "train_results.json"))
        if finished:
            logger.info("Stage %s finished before: loading its student from %s", stage.stage, stage.output_dir)
            student = type(student).from_pretrained(stage.output_dir)
            teacher = method.trainer_class.teacher_for_next_stage(teacher, student)
            continue
        stop_recording_attention_scores(student)
        trainer = method.trainer_class(
            model=student,
            teacher_model=teacher,
            args=stage,
            train_dataset=train_dataset,
            eval_dataset=next(iter(eval_datasets.values())),
            processing_class=tokenizer,
            compute_metrics=compute_metrics_for(task),
        )
        train_result = trainer.train(resume_from_checkpoint=resume)
        trainer.save_model()
        trainer.save_metrics("train", train_result.metrics, combined=False)
        trainer.save_state()
        student = trainer.student
        if stage is not stages[-1]:
            teacher = method.trainer_class.teacher_for_next_stage(teacher, student)
    metrics = evaluate_glue(trainer, task, eval_datasets)
    trainer.create_model_card(task_name=task.name, metrics=metrics)
    if config.push_to_hub:
        trainer.push_to_hub(task_name=task.name, metrics=metrics)
    return metrics


if __name__ == "__main__":
    run_script(main)
