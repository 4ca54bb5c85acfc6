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
from bertdistill.teacher_ensemble import teacher_prefix
from bertdistill.trainers import METHODS
from glue_tasks import get_task

logger = logging.getLogger(__name__)


@dataclass
class DistillArguments:
    """Method, teacher and how the student is made (exactly one of the four `student_*` options; none for
    `--method dynabert`, whose student is a copy of the whole teacher).

    Args:
        method (`str`, *optional*, defaults to `"kd"`): distillation method.
        teacher_model_name_or_path (`str`, *optional*): teacher fine-tuned on the task (see
            scripts/finetune_teacher.py). Required by every method that distills from a teacher; optional for `dml`
            and `finetune`; refused by the teacher-free ones (`cskd`, `byot`, `ddgsd`, `one`, `grafting`). Without a
            teacher the network comes from `student_layers_from` (its first / chosen layers with
            `student_num_layers` / `student_layers`, all of them otherwise) or `student_model_name_or_path`.
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

    teacher_model_name_or_path: list[str] | None = field(
        default=None,
        metadata={
            "help": "Teacher fine-tuned on the task (required except for teacher-free methods, e.g. cskd); several "
            "for --method multi_teacher."
        },
    )
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

    def __post_init__(self):
        if isinstance(self.teacher_model_name_or_path, str):  # a .json/.yaml argument file may give one path
            self.teacher_model_name_or_path = [self.teacher_model_name_or_path]


def main(argv: list[str] | None = None) -> dict[str, float]:
    argv = sys.argv[1:] if argv is None else argv
    method = get_method(method_from_argv(argv, default="kd"))
    parser = HfArgumentParser((DistillArguments, GlueRunArguments, method.config_class))
    args, run_args, config = parse_args(parser, argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)

    task = get_task(run_args.task_name)
    method.trainer_class.configure_for_task(config, task)
    # Some methods run in stages (TinyBERT: intermediate, then prediction); every stage's folder is checked first.
    stages = config.split_stages()
    resumes = [
        preflight(task, run_args, stage.output_dir, config.resume_from_checkpoint if stage is stages[-1] else None)
        for stage in stages
    ]
    teacher, own_tokenizers = None, []
    if check_teacher_argument(args, method):
        teachers = [load_teacher(path, task) for path in args.teacher_model_name_or_path]
        teacher = teachers if method.name == "multi_teacher" else teachers[0]
        if method.name == "multi_teacher":
            own_tokenizers = teacher_tokenizers(args.teacher_model_name_or_path)
    set_seed(config.seed)
    if teacher is None:
        student, source, tokenizer = network_without_teacher(args, task, method.layer_selection)
        check_max_seq_length(run_args.max_seq_length, tokenizer, student=student)
        return run_stages(method, config, stages, resumes, task, run_args, student, None, tokenizer, source)
    student_arguments = ("num_layers", "layers", "config", "model_name_or_path", "hidden_size", "num_attention_heads",
                         "intermediate_size")  # fmt: skip
    first = teacher[0] if isinstance(teacher, list) else teacher  # the student's source and tokenizer
    if method.full_student and all(getattr(args, f"student_{name}") is None for name in student_arguments):
        args.student_num_layers = first.config.num_hidden_layers  # DynaBERT: a copy of the whole teacher
    source = first
    if args.student_layers_from is not None:
        if args.student_num_layers is None and args.student_layers is None:
            raise ValueError("--student_layers_from needs --student_num_layers or --student_layers (which layers)")
        source = load_for_task(args.student_layers_from, task, "--student_layers_from")
        check_same_vocabulary(first.config, source.config)
    student = build_student_from_args(source, args, method.layer_selection)
    student.config.finetuning_task = task.name
    tokenizer = AutoTokenizer.from_pretrained(args.teacher_model_name_or_path[0])
    check_max_seq_length(run_args.max_seq_length, tokenizer, teacher=first, student=student)

    return run_stages(method, config, stages, resumes, task, run_args, student, teacher, tokenizer, source,
                      own_tokenizers)  # fmt: skip


def teacher_tokenizers(paths: list[str]) -> list:
    """Per teacher, `None` when it reads the first teacher's (the student's) tokens, else its own tokenizer."""
    tokenizers = []
    for path in paths:
        try:
            tokenizers.append(AutoTokenizer.from_pretrained(path))
        except OSError as error:
            raise FileNotFoundError(
                f"Teacher {path} has no tokenizer (multi-teacher KD tokenizes the data for each teacher): save the "
                f"teacher's tokenizer next to it ({error})"
            ) from error
    shared = tokenizers[0].get_vocab()
    own = [None] + [t if t.get_vocab() != shared else None for t in tokenizers[1:]]
    for path, t in zip(paths, own):
        if t is not None:
            logger.info("Teacher %s reads its own tokens (%s, %d): the training set is tokenized for it too", path,
                        type(t).__name__, len(t))  # fmt: skip
    return own


def check_teacher_argument(args: DistillArguments, method) -> bool:
    """Whether the method distills from a teacher; refuses a teacher it would ignore and a missing one it needs."""
    uses = method.trainer_class.uses_teacher
    if uses is None and args.teacher_model_name_or_path is None:  # optional (DML, finetune) and not given
        return False
    if uses is False:
        if args.teacher_model_name_or_path is not None:
            raise ValueError(
                f"--method {method.name} trains without a teacher and would ignore --teacher_model_name_or_path "
                f"{' '.join(args.teacher_model_name_or_path)}: leave it out (the network comes from "
                "--student_layers_from or --student_model_name_or_path)"
            )
        return False
    if args.teacher_model_name_or_path is None:
        raise ValueError(f"--method {method.name} distills from a teacher: give --teacher_model_name_or_path")
    several = len(args.teacher_model_name_or_path)
    if method.name == "multi_teacher" and several < 2:
        raise ValueError("--method multi_teacher needs at least 2 teachers: --teacher_model_name_or_path a b")
    if method.name != "multi_teacher" and several > 1:
        raise ValueError(f"--method {method.name} takes one teacher, got {several}; several: --method multi_teacher")
    return True


def network_without_teacher(args: DistillArguments, task, default_selection: str):
    """A teacher-free method's network, the model it was built from (None for a whole checkpoint) and the tokenizer:
    layers of `--student_layers_from` (all of them unless `--student_num_layers` / `--student_layers` choose), or the
    checkpoint `--student_model_name_or_path`, with a fresh task head where it has none."""
    shape = ("student_config", "student_hidden_size", "student_num_attention_heads", "student_intermediate_size")
    given = [f"--{name}" for name in shape if getattr(args, name) is not None]
    if given:
        raise ValueError(
            f"{', '.join(given)}: a random-init network needs a teacher's vocabulary; without a teacher take layers "
            "of a pre-trained encoder (--student_layers_from) or a checkpoint (--student_model_name_or_path)"
        )
    if (args.student_layers_from is None) == (args.student_model_name_or_path is None):
        raise ValueError(
            "Without a teacher, give exactly one of --student_layers_from (a pre-trained encoder whose layers the "
            "network takes) and --student_model_name_or_path (the network itself)"
        )
    if args.student_model_name_or_path is not None:
        if args.student_num_layers is not None or args.student_layers is not None:
            raise ValueError(
                "--student_num_layers/--student_layers choose layers of --student_layers_from; "
                "--student_model_name_or_path is taken whole"
            )
        path = args.student_model_name_or_path
        student = source = load_for_task(path, task, "--student_model_name_or_path")
    else:
        path = args.student_layers_from
        source = load_for_task(path, task, "--student_layers_from")
        if args.student_num_layers is None and args.student_layers is None:
            args.student_num_layers = source.config.num_hidden_layers
        student = build_student_from_args(source, args, default_selection)
    student.config.finetuning_task = task.name
    return student, source, AutoTokenizer.from_pretrained(path)


def run_stages(
    method, config, stages, resumes, task, run_args, student, teacher, tokenizer, source, own_tokenizers=()
):
    """Train the method's stages in turn (each resumable), then evaluate, write the model card, push if asked; the
    trainer's extra networks (DML's peers) each get their own folder, metrics and card. `own_tokenizers`: multi-teacher
    KD's per-teacher tokenizers (`None` where a teacher reads the student's tokens)."""
    encodings = {teacher_prefix(k): t for k, t in enumerate(own_tokenizers) if t is not None}
    extra = {"teacher_tokenizers": list(own_tokenizers)} if encodings else {}
    train_dataset, eval_datasets = load_glue_datasets(task, tokenizer, run_args, teacher_tokenizers=encodings)
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
            train_dataset=train_dataset if method.trainer_class.reads_train_set else None,
            eval_dataset=next(iter(eval_datasets.values())),
            processing_class=tokenizer,
            compute_metrics=compute_metrics_for(task),
            **method.trainer_class.script_kwargs(stage, source),
            **extra,
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
    for name in trainer.extra_network_names():
        folder = os.path.join(config.output_dir, name)
        network_metrics = trainer.save_extra_network(name, folder, task, eval_datasets)
        logger.info("%s: %s (in %s)", name, network_metrics, folder)
    if config.push_to_hub:
        trainer.push_to_hub(task_name=task.name, metrics=metrics)
    return metrics


if __name__ == "__main__":
    run_script(main)
