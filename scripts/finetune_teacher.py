#!/usr/bin/env python
"""Fine-tune a pre-trained BERT-style checkpoint on a GLUE task: the teacher that distill_glue.py distills.

    python scripts/finetune_teacher.py --task_name rte --glue_dir ../shared/glue_data --output_dir teacher-rte

Without --model_name_or_path it starts from the MiniLM-L6 BERT of the `demo` extra. --lora_r trains LoRA adapters
(peft) instead of every weight and merges them before saving, so the output is a plain checkpoint either way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from transformers import AutoTokenizer, HfArgumentParser, TrainingArguments
from transformers.trainer_utils import set_seed

from bertdistill import FineTuneTrainer
from bertdistill.glue_run import (
    PACKAGED_MINILM_HUB_ID,
    GlueRunArguments,
    check_max_seq_length,
    compute_metrics_for,
    evaluate_glue,
    load_for_task,
    load_glue_datasets,
    load_pretrained,
    packaged_minilm_path,
    packaged_mpnet_path,
    parse_args,
    preflight,
    run_script,
)
from bertdistill.task_head import check_regression_head_init, start_regression_heads
from glue_tasks import get_task

logger = logging.getLogger(__name__)

# --packaged_model: how to find it, and the Hub id its model card names
PACKAGED_MODELS = {
    "minilm": (packaged_minilm_path, PACKAGED_MINILM_HUB_ID),
    "mpnet": (packaged_mpnet_path, "sentence-transformers/all-mpnet-base-v2"),
}


@dataclass
class TeacherArguments:
    """Which checkpoint to fine-tune, and how.

    Args:
        model_name_or_path (`str`, *optional*): pre-trained checkpoint; defaults to the packaged model.
        packaged_model (`str`, *optional*, defaults to `"minilm"`): without `model_name_or_path`, `"minilm"` (the
            MiniLM-L6 BERT of the `demo` extra) or `"mpnet"` (all-mpnet-base-v2, 12 x 768, the `mpnet` extra,
            reassembled offline on first use, see `bertdistill.glue_run.packaged_mpnet_path`).
        lora_r (`int`, *optional*): LoRA rank; unset trains every weight.
        lora_alpha (`int`, *optional*, defaults to 16): LoRA scaling numerator.
        lora_dropout (`float`, *optional*, defaults to 0.1): dropout on the LoRA input.
        regression_head_init (`str`, *optional*, defaults to `"label_mean"`): regression tasks: where the new
            head's output bias starts, `"label_mean"` (the training labels' mean) or `"zero"` (transformers'
            initialisation); see `bertdistill.task_head`.
    """

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Pre-trained checkpoint (default: the packaged MiniLM-L6 of the demo extra)."}
    )
    packaged_model: str = field(
        default="minilm",
        metadata={"help": "Without --model_name_or_path: minilm (demo extra) or mpnet (mpnet extra)."},
    )
    lora_r: int | None = field(default=None, metadata={"help": "Train LoRA adapters of this rank, merged at the end."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.1, metadata={"help": "LoRA dropout."})
    regression_head_init: str = field(
        default="label_mean",
        metadata={"help": "Where a new regression head's output bias starts: label_mean or zero."},
    )

    def __post_init__(self):
        if self.packaged_model not in PACKAGED_MODELS:
            raise ValueError(
                f"--packaged_model must be one of {', '.join(PACKAGED_MODELS)}, got {self.packaged_model!r}"
            )
        check_regression_head_init(self.regression_head_init)
        if self.lora_r is not None and self.lora_r <= 0:
            raise ValueError(f"--lora_r must be positive, got {self.lora_r}")


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = HfArgumentParser((TeacherArguments, GlueRunArguments, TrainingArguments))
    model_args, run_args, training_args = parse_args(parser, argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)

    task = get_task(run_args.task_name)
    resume = preflight(task, run_args, training_args.output_dir, training_args.resume_from_checkpoint)
    path_of, hub_id = PACKAGED_MODELS[model_args.packaged_model]
    model_path = model_args.model_name_or_path or path_of()
    set_seed(training_args.seed)

    tokenizer = load_pretrained(AutoTokenizer, model_path, "--model_name_or_path")
    model = load_for_task(model_path, task, "--model_name_or_path")
    model.config.finetuning_task = task.name
    check_max_seq_length(run_args.max_seq_length, tokenizer, model=model)
    train_dataset, eval_datasets = load_glue_datasets(task, tokenizer, run_args)
    head_start = start_regression_heads(model, train_dataset, model_args.regression_head_init)
    if model_args.lora_r is not None:
        from peft import LoraConfig, TaskType, get_peft_model

        lora = LoraConfig(
            task_type=TaskType.SEQ_CLS,
            r=model_args.lora_r,
            lora_alpha=model_args.lora_alpha,
            lora_dropout=model_args.lora_dropout,
            target_modules=["query", "key", "value", "dense"],
        )
        model = get_peft_model(model, lora)
        model.print_trainable_parameters()

    trainer = FineTuneTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=next(iter(eval_datasets.values())),
        processing_class=tokenizer,
        compute_metrics=compute_metrics_for(task),
        base_model_name=model_args.model_name_or_path or hub_id,
    )
    trainer.regression_head_start = head_start
    train_result = trainer.train(resume_from_checkpoint=resume)
    if model_args.lora_r is not None:
        merged = trainer.model.merge_and_unload()
        trainer.model = trainer.model_wrapped = merged
    trainer.save_model()
    trainer.save_metrics("train", train_result.metrics, combined=False)
    trainer.save_state()
    metrics = evaluate_glue(trainer, task, eval_datasets)
    trainer.create_model_card(task_name=task.name, metrics=metrics)
    if training_args.push_to_hub:
        trainer.push_to_hub(task_name=task.name, metrics=metrics)
    return metrics


if __name__ == "__main__":
    run_script(main)
