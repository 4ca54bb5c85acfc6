"""The nine GLUE tasks as data: columns, labels, splits, metrics and where they live on disk and on the Hub."""

from __future__ import annotations

from dataclasses import dataclass

HUB_DATASET = "nyu-mll/glue"


@dataclass(frozen=True)
class TsvLayout:
    """How one task is stored in the classic GLUE TSV folder (the output of `download_glue_data.py`).

    Args:
        folder (`str`):
            Sub-folder of the GLUE directory, e.g. `"SST-2"`.
        files (`dict[str, str]`):
            Split name (as on the Hub) -> file name inside `folder`.
        columns (`dict[str, str | int]`):
            Hub column name -> header name in the TSV, or column position for header-less files. The label is
            looked up under `"label"`.
        has_header (`bool`, *optional*, defaults to `True`):
            Whether the first line is a header (CoLA has none).
    """

    folder: str
    files: dict[str, str]
    columns: dict[str, str | int]
    has_header: bool = True


@dataclass(frozen=True)
class GlueTask:
    """One GLUE task.

    Args:
        name (`str`):
            Short name, also the Hub config name of `nyu-mll/glue` (`"cola"`, `"sst2"`, ...).
        text_columns (`tuple[str, ...]`):
            One column for single-sentence tasks, two for sentence-pair tasks, in the order they are fed to the
            tokenizer.
        label_list (`tuple[str, ...]`):
            Class names in the order of the Hub's `ClassLabel` feature; empty for regression (STS-B).
        metrics (`tuple[str, ...]`):
            Official metric names as Hugging Face reports them (`accuracy`, `f1`, `matthews_correlation`,
            `pearson`, `spearmanr`).
        main_metric (`str`):
            The metric used to rank models (`metric_for_best_model`, the GLUE average).
        eval_splits (`tuple[str, ...]`):
            Hub split names evaluated as the dev set; MNLI has matched and mismatched.
        tsv (`TsvLayout`):
            Classic TSV layout of the task.
        label_range (`tuple[float, float]`, *optional*):
            The lowest and highest gold score of a regression task (STS-B: 0 to 5), for what needs the target space
            without reading rows (data-free distillation).
    """

    name: str
    text_columns: tuple[str, ...]
    label_list: tuple[str, ...]
    metrics: tuple[str, ...]
    main_metric: str
    tsv: TsvLayout
    eval_splits: tuple[str, ...] = ("validation",)
    label_range: tuple[float, float] | None = None

    @property
    def is_regression(self) -> bool:
        return not self.label_list

    @property
    def num_labels(self) -> int:
        return 1 if self.is_regression else len(self.label_list)

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.label_list)) if self.label_list else {0: "similarity"}

    def label_from_tsv(self, value: str) -> int | float:
        """Convert a label cell of the TSV into the Hub's encoding (class index or float score)."""
        if self.is_regression:
            return float(value)
        # Some tasks store class names ("entailment"), others the index itself ("0"/"1").
        if value in self.label_list:
            return self.label_list.index(value)
        if value.isdigit() and int(value) < len(self.label_list):
            return int(value)
        raise ValueError(f"{self.name}: unknown label {value!r}; expected one of {list(self.label_list)} or an index")


_PAIR = {"sentence1": "sentence1", "sentence2": "sentence2", "label": "label", "idx": "index"}

GLUE_TASKS: dict[str, GlueTask] = {}


def register_task(task: GlueTask) -> GlueTask:
    """Add a task to the registry; a name can only be registered once."""
    if task.name in GLUE_TASKS:
        raise ValueError(f"GLUE task {task.name!r} is already registered")
    GLUE_TASKS[task.name] = task
    return task


def get_task(name: str) -> GlueTask:
    """Look up a task by name (case-insensitive, `sst-2` and `sts-b` accepted)."""
    key = name.lower().replace("-", "")
    if key not in GLUE_TASKS:
        raise ValueError(f"Unknown GLUE task {name!r}. Valid task names: {', '.join(GLUE_TASKS)}")
    return GLUE_TASKS[key]


register_task(
    GlueTask(
        name="cola",
        text_columns=("sentence",),
        label_list=("unacceptable", "acceptable"),
        metrics=("matthews_correlation",),
        main_metric="matthews_correlation",
        tsv=TsvLayout("CoLA", {"train": "train.tsv", "validation": "dev.tsv"}, {"sentence": 3, "label": 1}, False),
    )
)
register_task(
    GlueTask(
        name="sst2",
        text_columns=("sentence",),
        label_list=("negative", "positive"),
        metrics=("accuracy",),
        main_metric="accuracy",
        tsv=TsvLayout(
            "SST-2", {"train": "train.tsv", "validation": "dev.tsv"}, {"sentence": "sentence", "label": "label"}
        ),
    )
)
register_task(
    GlueTask(
        name="mrpc",
        text_columns=("sentence1", "sentence2"),
        label_list=("not_equivalent", "equivalent"),
        metrics=("f1", "accuracy"),
        main_metric="f1",
        tsv=TsvLayout(
            "MRPC",
            {"train": "train.tsv", "validation": "dev.tsv"},
            {"sentence1": "#1 String", "sentence2": "#2 String", "label": "Quality"},
        ),
    )
)
register_task(
    GlueTask(
        name="qqp",
        text_columns=("question1", "question2"),
        label_list=("not_duplicate", "duplicate"),
        metrics=("f1", "accuracy"),
        main_metric="f1",
        tsv=TsvLayout(
            "QQP",
            {"train": "train.tsv", "validation": "dev.tsv"},
            {"question1": "question1", "question2": "question2", "label": "is_duplicate", "idx": "id"},
        ),
    )
)
register_task(
    GlueTask(
        name="stsb",
        text_columns=("sentence1", "sentence2"),
        label_list=(),
        metrics=("pearson", "spearmanr"),
        main_metric="pearson",
        tsv=TsvLayout("STS-B", {"train": "train.tsv", "validation": "dev.tsv"}, {**_PAIR, "label": "score"}),
        label_range=(0.0, 5.0),
    )
)
register_task(
    GlueTask(
        name="mnli",
        text_columns=("premise", "hypothesis"),
        label_list=("entailment", "neutral", "contradiction"),
        metrics=("accuracy",),
        main_metric="accuracy",
        eval_splits=("validation_matched", "validation_mismatched"),
        tsv=TsvLayout(
            "MNLI",
            {
                "train": "train.tsv",
                "validation_matched": "dev_matched.tsv",
                "validation_mismatched": "dev_mismatched.tsv",
            },
            {"premise": "sentence1", "hypothesis": "sentence2", "label": "gold_label", "idx": "index"},
        ),
    )
)
register_task(
    GlueTask(
        name="qnli",
        text_columns=("question", "sentence"),
        label_list=("entailment", "not_entailment"),
        metrics=("accuracy",),
        main_metric="accuracy",
        tsv=TsvLayout(
            "QNLI",
            {"train": "train.tsv", "validation": "dev.tsv"},
            {"question": "question", "sentence": "sentence", "label": "label", "idx": "index"},
        ),
    )
)
register_task(
    GlueTask(
        name="rte",
        text_columns=("sentence1", "sentence2"),
        label_list=("entailment", "not_entailment"),
        metrics=("accuracy",),
        main_metric="accuracy",
        tsv=TsvLayout("RTE", {"train": "train.tsv", "validation": "dev.tsv"}, _PAIR),
    )
)
register_task(
    GlueTask(
        name="wnli",
        text_columns=("sentence1", "sentence2"),
        label_list=("not_entailment", "entailment"),
        metrics=("accuracy",),
        main_metric="accuracy",
        tsv=TsvLayout("WNLI", {"train": "train.tsv", "validation": "dev.tsv"}, _PAIR),
    )
)
