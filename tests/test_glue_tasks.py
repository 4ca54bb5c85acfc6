import math

import datasets
import numpy as np
import pytest

import glue_tasks
from glue_tasks import GLUE_TASKS, get_task, glue_metrics, load_glue_split, paired_bootstrap, read_glue_tsv

SPLIT_OF_FILE = {"train.tsv": "train", "dev.tsv": "validation"}


def sources_row_counts(glue_dir):
    """{(folder, file): rows} from the table in SOURCES.md."""
    lines = [
        line for line in (glue_dir / "SOURCES.md").read_text(encoding="utf-8").splitlines() if line.startswith("|")
    ]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    counts = {}
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if cells[0].endswith(".tsv"):
            counts[tuple(cells[0].split("/"))] = int(cells[header.index("rows")])
    return counts


def test_all_nine_tasks_with_hub_label_order():
    assert set(GLUE_TASKS) == {"cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli"}
    assert get_task("mnli").label_list == ("entailment", "neutral", "contradiction")
    assert get_task("mnli").eval_splits == ("validation_matched", "validation_mismatched")
    assert get_task("rte").label_list == ("entailment", "not_entailment")
    assert get_task("wnli").label_list == ("not_entailment", "entailment")
    assert get_task("stsb").is_regression and get_task("stsb").num_labels == 1
    assert get_task("SST-2") is get_task("sst2")


def test_unknown_task_lists_valid_names():
    with pytest.raises(ValueError, match="Valid task names: cola, sst2, mrpc"):
        get_task("imdb")


def test_registry_refuses_duplicates():
    with pytest.raises(ValueError, match="already registered"):
        glue_tasks.register_task(get_task("rte"))


def test_every_local_file_loads_with_the_row_counts_of_sources_md(glue_dir):
    counts = sources_row_counts(glue_dir)
    assert len(counts) == 13
    on_disk = {(path.parent.name, path.name) for path in glue_dir.glob("*/*.tsv")}
    assert on_disk == set(counts), "every TSV under the GLUE folder is listed in SOURCES.md, and vice versa"
    folder_to_task = {task.tsv.folder: task for task in GLUE_TASKS.values()}
    for (folder, file), rows in counts.items():
        task = folder_to_task[folder]
        dataset = read_glue_tsv(task, SPLIT_OF_FILE[file], glue_dir)
        assert len(dataset) == rows, (folder, file)
        for column in task.text_columns:
            assert all(isinstance(text, str) and text for text in dataset[column][:50])


def test_tsv_quirks_quotes_bom_and_headerless(glue_dir):
    mrpc = read_glue_tsv("mrpc", "train", glue_dir)
    # Unbalanced quote characters must stay inside one field, not swallow rows.
    assert mrpc[0]["sentence1"].startswith('Amrozi accused his brother , whom he called " the witness "')
    assert mrpc[0]["label"] == 1
    assert mrpc.features["label"].names == ["not_equivalent", "equivalent"]
    cola = read_glue_tsv("cola", "validation", glue_dir)
    assert cola[0] == {"sentence": "The sailors rode the breeze clear of the rocks.", "label": 1, "idx": 0}
    rte = read_glue_tsv("rte", "validation", glue_dir)
    assert rte[0]["label"] == 1  # not_entailment
    stsb = read_glue_tsv("stsb", "validation", glue_dir)
    assert stsb[0]["label"] == 5.0 and stsb.features["label"].dtype == "float32"


def test_mnli_layout_and_label_names(tmp_path):
    header = "index\tpromptID\tpairID\tgenre\ts1bp\ts2bp\ts1p\ts2p\tsentence1\tsentence2\tlabel1\tgold_label\n"
    (tmp_path / "MNLI").mkdir()
    for name in ("train.tsv", "dev_matched.tsv", "dev_mismatched.tsv"):
        rows = [
            f'{i}\tp\tq\tfiction\tx\tx\tx\tx\tPremise {i} "x\tHypothesis {i}\tneutral\t{label}\n'
            for i, label in enumerate(["contradiction", "entailment", "neutral"])
        ]
        (tmp_path / "MNLI" / name).write_text(header + "".join(rows), encoding="utf-8")
    dataset = load_glue_split("mnli", "validation_mismatched", tmp_path)
    assert dataset["label"] == [2, 0, 1]
    assert dataset[0]["premise"] == 'Premise 0 "x' and dataset[0]["hypothesis"] == "Hypothesis 0"


def test_missing_files_and_splits_raise_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"RTE/dev.tsv"):
        load_glue_split("rte", "validation", tmp_path)
    with pytest.raises(ValueError, match="no split 'validation_matched'"):
        glue_tasks.tsv_path("rte", "validation_matched", tmp_path)
    with pytest.raises(FileNotFoundError, match="GLUE directory not found"):
        glue_tasks.check_glue_dir("rte", tmp_path / "nope", ("train",))


def test_without_glue_dir_loads_from_the_hub(monkeypatch):
    calls = []

    def fake_load_dataset(path, name, split):
        calls.append((path, name, split))
        return datasets.Dataset.from_dict({"sentence": ["x"], "label": [0], "idx": [0]})

    monkeypatch.delenv("GLUE_DIR", raising=False)
    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    load_glue_split("qqp", "train")
    assert calls == [("nyu-mll/glue", "qqp", "train")]


def test_glue_dir_env_is_used(monkeypatch, glue_dir):
    monkeypatch.setenv("GLUE_DIR", str(glue_dir))
    assert len(load_glue_split("wnli", "validation")) == 71


def test_metrics_match_their_definitions():
    references = np.array([1, 0, 1, 1, 0, 1, 0, 0])
    predictions = np.array([1, 0, 0, 1, 1, 1, 0, 1])
    tp, fp, fn, tn = 3, 2, 1, 2
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    f1 = 2 * precision * recall / (precision + recall)
    mcc = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    mrpc = glue_metrics("mrpc", predictions, references)
    assert mrpc["accuracy"] == pytest.approx(5 / 8)
    assert mrpc["f1"] == pytest.approx(f1)
    assert mrpc["combined_score"] == pytest.approx((f1 + 5 / 8) / 2)
    assert glue_metrics("cola", predictions, references) == {"matthews_correlation": pytest.approx(mcc)}
    logits = np.stack([-predictions, predictions], axis=1).astype(float)
    assert glue_metrics("rte", logits, references) == {"accuracy": pytest.approx(5 / 8)}

    scores = np.array([0.1, 2.0, 3.5, 3.0, 1.0])
    gold = np.array([0.0, 2.5, 3.0, 5.0, 1.5])
    stsb = glue_metrics("stsb", scores[:, None], gold)
    centred_s, centred_g = scores - scores.mean(), gold - gold.mean()
    pearson = (centred_s @ centred_g) / np.sqrt((centred_s @ centred_s) * (centred_g @ centred_g))
    assert stsb["pearson"] == pytest.approx(pearson)
    assert stsb["spearmanr"] == pytest.approx(0.9)  # ranks differ in one adjacent swap: 1 - 6*2/(5*24)


def test_paired_bootstrap_matches_the_normal_approximation_of_a_paired_difference():
    rng = np.random.default_rng(0)
    references = rng.integers(0, 2, 400)
    a = np.where(rng.random(400) < 0.85, references, 1 - references)
    # B is A with about one correct answer in eight made wrong: their errors overlap, so pairing the rows narrows the
    # interval to about half of what two independent samples would give (which this test would reject).
    b = np.where((a == references) & (rng.random(400) < 0.12), 1 - a, a)
    result = paired_bootstrap("rte", a, b, references, n_resamples=1000)
    # Independent reference: the accuracy difference is the mean of per-row differences d in {-1, 0, 1}; its
    # normal-approximation 95% interval is mean +- 1.96 sd(d) / sqrt(n).
    d = (a == references).astype(float) - (b == references).astype(float)
    half = 1.96 * d.std() / math.sqrt(len(d))
    assert result["difference"] == pytest.approx(d.mean())
    assert result["low"] == pytest.approx(d.mean() - half, abs=0.2 * half)
    assert result["high"] == pytest.approx(d.mean() + half, abs=0.2 * half)
    assert result["low"] > 0  # a 10-point gap on 400 rows is well outside the noise
    assert paired_bootstrap("rte", a, b, references, n_resamples=1000) == result  # seeded: reproducible


def test_paired_bootstrap_of_identical_models_and_of_several_runs():
    rng = np.random.default_rng(1)
    references = rng.integers(0, 2, 60)
    a, b = (np.where(rng.random((2, 60)) < p, references, 1 - references) for p in (0.9, 0.6))
    assert paired_bootstrap("mrpc", a[0], a[0], references, n_resamples=50) == {"difference": 0.0, "low": 0.0,
                                                                               "high": 0.0}  # fmt: skip
    result = paired_bootstrap("mrpc", a, b, references, n_resamples=200)
    per_run = [glue_metrics("mrpc", a[i], references)["f1"] - glue_metrics("mrpc", b[i], references)["f1"]
               for i in range(2)]  # fmt: skip
    assert result["difference"] == pytest.approx(np.mean(per_run))
    assert result["low"] <= result["difference"] <= result["high"]
    with pytest.raises(ValueError, match="pair every run"):
        paired_bootstrap("mrpc", a, b[0], references)
    with pytest.raises(ValueError, match=r"shape \(1, 59\)"):
        paired_bootstrap("mrpc", a[0, :59], b[0], references)
