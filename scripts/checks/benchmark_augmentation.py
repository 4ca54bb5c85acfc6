#!/usr/bin/env python
"""Throughput of TinyBERT's data augmentation on real GLUE sentences, and what each speed lever buys.

    python scripts/checks/benchmark_augmentation.py --glue_dir ../shared/glue_data --task_name sst2 --num_sentences 160

Augmentation costs one masked-LM forward per single-piece word, whatever the number of copies, so its speed is the
speed of `Augmenter.candidates`. Without --mlm_model_name_or_path the masked LM is a BERT-base-sized
`BertForMaskedLM` (12 x 768, the size the paper uses) with random weights and the packaged MiniLM's uncased
tokenizer: speed does not depend on the weights, and no pre-trained masked LM is available offline. Four settings
run on the same sentences, interleaved in rounds so that a busy machine slows them alike: the plain loop, batches
sorted by length, the LM head only at the mask positions, both (the default), and both with INT8 dynamic
quantization of the masked LM (`augment_glue.py --quantize`), and both under bfloat16 autocast (`--bf16`; fast on
CPUs with AMX such as recent Xeons, slow on CPUs without native bf16). Prints words/s, the ratios and the
projected time for the whole training set, and writes them to --output_json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

from bertdistill.augmentation import AugmentationConfig, Augmenter
from bertdistill.glue_run import packaged_minilm_path
from glue_tasks import get_task, load_glue_split

SETTINGS = {
    "plain": {"fast_head": False, "sort_by_length": False},
    "sorted": {"fast_head": False, "sort_by_length": True},
    "head at masks": {"fast_head": True, "sort_by_length": False},
    "both (default)": {"fast_head": True, "sort_by_length": True},
    "both + int8 (--quantize)": {"fast_head": True, "sort_by_length": True, "quantize": True},
    "both + bf16 (--bf16)": {"fast_head": True, "sort_by_length": True, "bf16": True},
}
CONFIG_LEVERS = ("quantize", "bf16")  # AugmentationConfig fields; the other keys are Augmenter arguments


def random_bert_base_mlm(folder: str) -> str:
    tokenizer = AutoTokenizer.from_pretrained(packaged_minilm_path())
    torch.manual_seed(0)
    BertForMaskedLM(BertConfig(vocab_size=len(tokenizer))).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task_name", default="sst2")
    parser.add_argument("--glue_dir", default=None, help="Classic GLUE folder (default: $GLUE_DIR, else the Hub).")
    parser.add_argument("--mlm_model_name_or_path", default=None, help="Default: random BERT-base-sized MLM.")
    parser.add_argument("--num_sentences", type=int, default=160, help="First sentences of the training set.")
    parser.add_argument("--rounds", type=int, default=4, help="The sentences are split into this many rounds.")
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--output_json", default=None)
    args = parser.parse_args(argv)
    if args.num_sentences < args.rounds:
        raise ValueError("--num_sentences must be at least --rounds")

    task = get_task(args.task_name)
    train = load_glue_split(task, "train", args.glue_dir)
    column = task.text_columns[0]
    all_texts = list(train[column])
    sentences = all_texts[: args.num_sentences]
    config = AugmentationConfig(batch_size=args.batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        mlm = args.mlm_model_name_or_path or random_bert_base_mlm(tmp)
        augmenters = {
            name: Augmenter(
                mlm, config=dataclasses.replace(config, **{k: kw.pop(k) for k in CONFIG_LEVERS if k in kw}), **kw
            )
            for name, kw in ((n, dict(k)) for n, k in SETTINGS.items())
        }
        seconds = dict.fromkeys(SETTINGS, 0.0)
        per_round = -(-len(sentences) // args.rounds)
        for start in range(0, len(sentences), per_round):
            chunk = sentences[start : start + per_round]
            for name, augmenter in augmenters.items():
                begin = time.perf_counter()
                augmenter.candidates(chunk)
                seconds[name] += time.perf_counter() - begin
                print(f"round at {start}: {name} {seconds[name]:.1f} s so far", flush=True)

    words = sum(len(s.split()) for s in sentences)
    total_words = sum(len(s.split()) for s in all_texts) * len(task.text_columns)
    machine = f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"
    rows = [
        {
            "setting": name,
            "seconds": seconds[name],
            "words_per_s": words / seconds[name],
            "speedup": seconds["plain"] / seconds[name],
            "projected_train_hours": total_words / (words / seconds[name]) / 3600,
        }
        for name in SETTINGS
    ]
    print(f"\n{task.name} train, first {len(sentences)} sentences ({words} words); masked LM: "
          f"{mlm if args.mlm_model_name_or_path else 'random BERT-base (12 x 768)'}; {machine}\n")  # fmt: skip
    print("| setting | words/s | speedup | whole train set (h) |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['setting']} | {row['words_per_s']:.1f} | {row['speedup']:.2f}x | "
              f"{row['projected_train_hours']:.1f} |")  # fmt: skip
    result = {"machine": machine, "task": task.name, "sentences": len(sentences), "words": words,
              "train_words": total_words, "args": vars(args), "rows": rows}  # fmt: skip
    if args.output_json:
        Path(args.output_json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output_json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
