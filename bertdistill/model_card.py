"""Model cards for fine-tuned teachers and distilled students, with GLUE dev metrics as `model-index` metadata."""

from __future__ import annotations

import os
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from transformers import PreTrainedModel

from glue_tasks import HUB_DATASET, get_task

from .benchmark import count_parameters

METHOD_DESCRIPTIONS = {
    "fine-tuning": "fine-tuned on the task's gold labels (no teacher)",
    "kd": "distilled from the teacher's logits (Hinton et al. 2015): temperature soft-target KL plus the task loss",
    "pkd": "Patient Knowledge Distillation (Sun et al. 2019): soft targets, task loss and normalised intermediate "
    "[CLS] vectors following the teacher's",
    "distilbert": "DistilBERT's triple loss (Sanh et al. 2019): soft targets, task loss and cosine alignment of "
    "hidden states",
    "byot": "BYOT self-distillation (Zhang et al. 2019): no teacher; classifiers after the shallower layers learn "
    "from the labels and from the deepest classifier's soft targets and features (early exit possible)",
    "dml": "deep mutual learning (Zhang et al. 2018): networks trained together, each on the labels and on the "
    "others' predictions",
    "ddgsd": "data-distortion guided self-distillation (Xu and Liu 2019): no teacher; two distorted views of each "
    "input learn the labels and agree in predictions and features",
    "one": "on-the-fly native ensemble (Lan et al. 2018): no teacher; branches of the top layers learn the labels and "
    "the soft targets of their gated ensemble",
    "grafting": "filter grafting (Meng et al. 2020): no teacher; networks trained side by side graft each other's "
    "weights, weighted by their entropy",
    "multi_teacher": "distilled from several teachers' mixed soft targets plus the task loss",
    "gan_kd": "adversarial distillation (Xu et al. 2017): soft targets and task loss plus fooling a label-conditioned "
    "discriminator of teacher vs student outputs",
    "data_free": "data-free distillation (DAFL, Chen et al. 2019): the student learned the teacher's predictions on "
    "generated input embeddings only, never on training rows",
    "cskd": "class-wise self-knowledge distillation, CS-KD (Yun et al. 2020): no teacher; each example's prediction "
    "follows the network's own prediction for another example of its class",
    "tinybert": "TinyBERT (Jiao et al. 2020): embedding, hidden-state and attention-score distillation through "
    "learned projections, then the prediction layer",
}


def _eval_results(task_name: str, metrics: dict[str, float]) -> list[EvalResult]:
    task = get_task(task_name)
    results = []
    for key, value in sorted(metrics.items()):
        for split in task.eval_splits:
            # run_glue.py naming: eval_<metric> for the (first) dev split, eval_<metric>_mm for MNLI mismatched.
            suffix = "_mm" if split == "validation_mismatched" else ""
            for metric in task.metrics:
                if key == f"eval_{metric}{suffix}":
                    results.append(
                        EvalResult(
                            task_type="text-classification",
                            task_name="Text Classification",
                            dataset_type=HUB_DATASET,
                            dataset_name=f"GLUE {task.name.upper()}",
                            dataset_config=task.name,
                            dataset_split=split,
                            metric_type=metric,
                            metric_name=metric.replace("_", " ").title(),
                            metric_value=round(float(value), 4),
                        )
                    )
    return results


def build_model_card(
    model: PreTrainedModel,
    model_name: str,
    base_model: str | None,
    method: str,
    hyperparameters: dict[str, Any],
    task_name: str | None = None,
    metrics: dict[str, float] | None = None,
    teacher: PreTrainedModel | None = None,
) -> ModelCard:
    """A `ModelCard` whose metadata names the base model (the teacher for a student) and lists the dev metrics."""
    eval_results = _eval_results(task_name, metrics) if task_name and metrics else None
    # A local folder is no Hub id: name it in the text only.
    base = base_model if base_model and not os.path.exists(base_model) else None
    data = ModelCardData(
        library_name="transformers",
        pipeline_tag="text-classification",
        base_model=base,
        datasets=[HUB_DATASET] if task_name else None,
        tags=["bertdistill", "knowledge-distillation" if method != "fine-tuning" else "fine-tuned", method],
        model_name=model_name,
        eval_results=eval_results,
    )
    lines = [
        f"# {model_name}",
        "",
        f"Made with [bertdistill](https://github.com/bertdistill/bertdistill): "
        f"{METHOD_DESCRIPTIONS.get(method, method)}"
        + (f", starting from `{base_model}`" if base_model else "")
        + (f", on GLUE {task_name.upper()}." if task_name else "."),
        "",
        "## Size",
        "",
        "| model | layers | hidden | parameters |",
        "|---|---|---|---|",
        f"| this model | {model.config.num_hidden_layers} | {model.config.hidden_size} | "
        f"{count_parameters(model):,} |",
    ]
    if teacher is not None:
        lines.append(
            f"| teacher `{base_model}` | {teacher.config.num_hidden_layers} | {teacher.config.hidden_size} | "
            f"{count_parameters(teacher):,} |"
        )
    lines += ["", "## Training", "", f"Method: `{method}`", "", "| hyper-parameter | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in hyperparameters.items()]
    if metrics:
        lines += ["", "## GLUE dev results", "", "| metric | value |", "|---|---|"]
        official = (
            {f"eval_{m}{suffix}" for m in get_task(task_name).metrics for suffix in ("", "_mm")}
            if task_name
            else set()
        )
        lines += [f"| {name} | {value:.4f} |" for name, value in sorted(metrics.items()) if name in official]
    lines += [
        "",
        "## Use",
        "",
        "```python",
        "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
        "",
        f'model = AutoModelForSequenceClassification.from_pretrained("{model_name}")',
        f'tokenizer = AutoTokenizer.from_pretrained("{model_name}")',
        "```",
    ]
    return ModelCard.from_template(data, template_str="---\n{{ card_data }}\n---\n\n" + "\n".join(lines) + "\n")


class ModelCardMixin:
    """Gives a `Trainer` a `create_model_card` that writes our card; `push_to_hub(task_name=..., metrics=...)` passes
    those through. The host class provides `method_name`, `hyperparameters()`, `card_model()` and `card_base()`."""

    method_name = "fine-tuning"

    def hyperparameters(self) -> dict[str, Any]:
        return {}

    def speed_lever_rows(self) -> dict[str, str]:
        """`{lever: "value (who chose it: why)"}` for the card's hyper-parameter table (see
        `bertdistill.speed_levers`); none by default."""
        return {}

    def regression_head_rows(self) -> dict[str, str]:
        """Where the run started an untrained regression head (`regression_head_start`, see
        `bertdistill.task_head`), for the card; none when it was not moved from 0."""
        start = getattr(self, "regression_head_start", None)
        if start is None:
            return {}
        return {"regression_head_init": f"{start['how']} ({start['value']:.4f}: {', '.join(start['layers'])})"}

    def card_model(self) -> PreTrainedModel:
        return self.accelerator.unwrap_model(self.model)

    def card_base(self) -> tuple[str | None, PreTrainedModel | None]:
        """`(base model name, teacher model or None)`."""
        return getattr(self, "base_model_name", None), None

    def create_model_card(
        self,
        model_name: str | None = None,
        task_name: str | None = None,
        metrics: dict[str, float] | None = None,
        model: PreTrainedModel | None = None,
        output_dir: str | None = None,
        **kwargs,
    ) -> None:
        """Write README.md into `output_dir` (default: the run's) for `model` (default: `card_model()`; another
        network the run trained, e.g. a DML peer)."""
        if not self.is_world_process_zero():
            return
        args = self.args
        output_dir = output_dir or args.output_dir
        base_model, teacher = self.card_base()
        card = build_model_card(
            model=model if model is not None else self.card_model(),
            model_name=model_name or os.path.basename(os.path.abspath(output_dir)),
            base_model=base_model,
            method=self.method_name,
            hyperparameters={
                **self.hyperparameters(),
                "learning_rate": args.learning_rate,
                "per_device_train_batch_size": args.per_device_train_batch_size,
                "gradient_accumulation_steps": args.gradient_accumulation_steps,
                "num_train_epochs": args.num_train_epochs,
                "max_steps": args.max_steps,
                "seed": args.seed,
                **self.speed_lever_rows(),
                **self.regression_head_rows(),
            },
            task_name=task_name,
            metrics=metrics,
            teacher=teacher,
        )
        os.makedirs(output_dir, exist_ok=True)
        card.save(os.path.join(output_dir, "README.md"))
