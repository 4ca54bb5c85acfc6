#!/usr/bin/env python
"""General (task-agnostic) distillation on raw text: a pre-trained teacher teaches a student, no labels involved.

    accelerate launch scripts/distill_general.py --method distilbert --teacher_model_name_or_path bert-base-uncased \
        --train_file corpus.txt --student_num_layers 6 --output_dir distil-general --max_seq_length 128

DistilBERT's general mode: masked-LM loss on 15% of the tokens (80% [MASK], 10% random, 10% kept; rare word pieces
chosen more often, --mlm_smoothing 0.7 as the authors' code, 0 for BERT's uniform masking) weighted by --alpha_ce,
soft-target KL over the vocabulary at every real token (--alpha_kd, --temperature; --restrict_kd_to_mask true: at
the masked positions only) and the cosine loss between hidden states (--alpha_cos); the teacher needs a masked-LM
head.

TinyBERT's general mode (--method tinybert): the intermediate-layer losses only (embeddings, hidden states through
learnable projections, pre-softmax attention scores; no masking, no prediction layer), usually into a narrower
student trained from scratch (--student_num_layers 4 --student_hidden_size 312 --student_intermediate_size 1200);
any pre-trained BERT is a teacher, a bare encoder included (the packaged MiniLM works).

Text comes from a plain text file (one example per line) or a dataset (--dataset_name, --text_column). The student
is a plain checkpoint (*ForMaskedLM, or a bare encoder for TinyBERT); task-distill it with
distill_glue.py --student_model_name_or_path.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from dataclasses import dataclass, field

import datasets
from transformers import (
    AutoModel,
    AutoModelForMaskedLM,
    AutoTokenizer,
    DataCollatorForLanguageModeling,
    HfArgumentParser,
)
from transformers.trainer_utils import set_seed

from bertdistill import get_method
from bertdistill.glue_run import (
    build_student_from_args,
    check_max_seq_length,
    load_pretrained,
    method_from_argv,
    parse_args,
    resolve_resume,
    run_script,
)
from bertdistill.masking import SmoothedMaskingCollator, masking_weights, token_counts

logger = logging.getLogger(__name__)

GENERAL_METHODS = ("distilbert", "tinybert")


@dataclass
class GeneralDistillArguments:
    """Teacher, text and student for general distillation.

    Args:
        teacher_model_name_or_path (`str`): pre-trained teacher with a masked-LM head (`*ForMaskedLM`).
        method (`str`, *optional*, defaults to `"distilbert"`): general distillation method.
        train_file (`str`, *optional*): plain text, one example per line.
        validation_file (`str`, *optional*): held-out text; otherwise `validation_rows` lines of the training text.
        dataset_name (`str`, *optional*): a `datasets` name instead of `train_file` (with `dataset_config_name`,
            `dataset_split`, `text_column`).
        max_seq_length (`int`, *optional*, defaults to 128): longer lines are truncated.
        mlm_probability (`float`, *optional*, defaults to 0.15): share of tokens masked.
        mlm_smoothing (`float`, *optional*, defaults to 0.7): DistilBERT's frequency smoothing of the masking: a
            token is chosen with probability proportional to `count ** -mlm_smoothing` over the training text
            (`bertdistill.masking`); 0: every token alike (transformers' `DataCollatorForLanguageModeling`).
        student_* : as in distill_glue.py.
    """

    teacher_model_name_or_path: str = field(metadata={"help": "Pre-trained teacher with a masked-LM head."})
    method: str = field(default="distilbert", metadata={"help": f"One of {', '.join(GENERAL_METHODS)}."})
    train_file: str | None = field(default=None, metadata={"help": "Plain text file, one example per line."})
    validation_file: str | None = field(default=None, metadata={"help": "Held-out plain text file."})
    validation_rows: int = field(default=200, metadata={"help": "Rows held out when there is no validation_file."})
    dataset_name: str | None = field(default=None, metadata={"help": "A datasets name instead of --train_file."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "Its configuration."})
    dataset_split: str = field(default="train", metadata={"help": "Its split."})
    text_column: str = field(default="text", metadata={"help": "Column holding the text."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N training rows."})
    max_seq_length: int = field(default=128, metadata={"help": "Maximum tokens per example."})
    mlm_probability: float = field(default=0.15, metadata={"help": "Share of tokens masked."})
    mlm_smoothing: float = field(
        default=0.7, metadata={"help": "Mask rare tokens more: weight count**-smoothing (0: uniform masking)."}
    )
    student_num_layers: int | None = field(default=None, metadata={"help": "Take this many teacher layers."})
    student_layer_selection: str | None = field(default=None, metadata={"help": "uniform, first or alternate."})
    student_layers: str | None = field(default=None, metadata={"help": "Take these 0-based teacher layers."})
    student_config: str | None = field(default=None, metadata={"help": "Random-init student from this config."})
    student_hidden_size: int | None = field(default=None, metadata={"help": "Random-init student this wide."})
    student_num_attention_heads: int | None = field(default=None, metadata={"help": "Its attention heads."})
    student_intermediate_size: int | None = field(default=None, metadata={"help": "Its feed-forward size."})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Write into a non-empty output_dir."})

    def __post_init__(self):
        if (self.train_file is None) == (self.dataset_name is None):
            raise ValueError("Give exactly one of --train_file and --dataset_name")
        if not 0 < self.mlm_probability < 1:
            raise ValueError(f"--mlm_probability must be in (0, 1), got {self.mlm_probability}")
        if self.mlm_smoothing < 0:
            raise ValueError(f"--mlm_smoothing must be >= 0, got {self.mlm_smoothing}")


def load_text(args: GeneralDistillArguments) -> tuple[datasets.Dataset, datasets.Dataset]:
    """(train, validation) datasets with one column `text`, empty lines dropped."""
    if args.train_file is not None:
        files = {"train": args.train_file, **({"validation": args.validation_file} if args.validation_file else {})}
        for path in files.values():
            if not os.path.isfile(path):
                raise FileNotFoundError(f"Text file not found: {path}")
        raw = datasets.load_dataset("text", data_files=files)
        train, validation = raw["train"], raw.get("validation")
    else:
        train = datasets.load_dataset(args.dataset_name, args.dataset_config_name, split=args.dataset_split)
        if args.text_column not in train.column_names:
            raise ValueError(f"--text_column {args.text_column!r} not in {train.column_names}")
        train = train.select_columns([args.text_column]).rename_column(args.text_column, "text")
        validation = None

    def non_empty(row):
        return bool(row["text"].strip())

    train = train.filter(non_empty)
    if validation is None:
        if len(train) <= args.validation_rows:
            raise ValueError(f"Only {len(train)} non-empty rows: too few to hold out {args.validation_rows}")
        split = train.train_test_split(test_size=args.validation_rows, seed=0)
        train, validation = split["train"], split["test"]
    else:
        validation = validation.filter(non_empty)
    if args.max_train_samples is not None:
        train = train.select(range(min(args.max_train_samples, len(train))))
    return train, validation


def load_mlm_teacher(path: str):
    model, info = load_pretrained(AutoModelForMaskedLM, path, "--teacher_model_name_or_path", output_loading_info=True)
    missing = [key for key in info["missing_keys"] if key.startswith("cls.") or "lm_head" in key]
    if missing:
        raise ValueError(
            f"Teacher {path} has no pre-trained masked-LM head ({len(missing)} weights missing, e.g. {missing[0]}); "
            "general distillation needs one (the packaged MiniLM has none: distill it per task with distill_glue.py)"
        )
    return model


def main(argv: list[str] | None = None) -> dict[str, float]:
    argv = sys.argv[1:] if argv is None else argv
    method = get_method(method_from_argv(argv, default="distilbert"))
    if method.name not in GENERAL_METHODS:
        raise ValueError(f"Unknown general method {method.name!r}; valid: {', '.join(GENERAL_METHODS)}")
    parser = HfArgumentParser((GeneralDistillArguments, method.config_class))
    args, config = parse_args(parser, argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)

    if method.name == "tinybert" and config.stage != "intermediate":
        raise ValueError(
            "TinyBERT's general distillation uses the intermediate-layer losses only: --stage intermediate"
        )
    resume = resolve_resume(config.output_dir, args.overwrite_output_dir, config.resume_from_checkpoint)
    train_text, validation_text = load_text(args)
    teacher = load_mlm_teacher(args.teacher_model_name_or_path) if method.name == "distilbert" else (
        load_pretrained(AutoModel, args.teacher_model_name_or_path, "--teacher_model_name_or_path")
    )  # fmt: skip
    set_seed(config.seed)
    student = build_student_from_args(teacher, args, method.layer_selection)
    tokenizer = AutoTokenizer.from_pretrained(args.teacher_model_name_or_path)
    check_max_seq_length(args.max_seq_length, tokenizer, teacher=teacher, student=student)

    def encode(batch):
        return tokenizer(batch["text"], truncation=True, max_length=args.max_seq_length)

    train = train_text.map(encode, batched=True, remove_columns=["text"], desc="Tokenizing")
    validation = validation_text.map(encode, batched=True, remove_columns=["text"], desc="Tokenizing")
    masked_lm = method.name == "distilbert"
    collator = None
    if masked_lm and args.mlm_smoothing:
        counts = token_counts(train["input_ids"], student.config.vocab_size)
        weights = masking_weights(counts, args.mlm_smoothing, tokenizer.all_special_ids)
        collator = SmoothedMaskingCollator(tokenizer, weights, args.mlm_probability)
    elif masked_lm:
        collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=args.mlm_probability)
    trainer = method.trainer_class(
        model=student,
        teacher_model=teacher,
        args=config,
        train_dataset=train,
        eval_dataset=validation,
        processing_class=tokenizer,
        data_collator=collator,
    )

    def evaluate(prefix: str) -> dict[str, float]:
        # The masked-LM loss for DistilBERT's student; the distillation loss itself for a bare TinyBERT encoder.
        metrics = trainer.evaluate(metric_key_prefix=prefix) if masked_lm else {}
        return {**metrics, **trainer.distillation_loss(validation, metric_key_prefix=prefix)}

    before = evaluate("eval_before")
    train_result = trainer.train(resume_from_checkpoint=resume)
    trainer.save_model()
    trainer.save_metrics("train", train_result.metrics, combined=False)
    trainer.save_state()
    metrics = {**before, **evaluate("eval")}
    if masked_lm:
        metrics["eval_perplexity"] = math.exp(min(metrics["eval_loss"], 50))
    trainer.log_metrics("eval", metrics)
    trainer.save_metrics("eval", metrics, combined=False)
    trainer.create_model_card(metrics=metrics)
    if config.push_to_hub:
        trainer.push_to_hub(metrics=metrics)
    return metrics


if __name__ == "__main__":
    run_script(main)
