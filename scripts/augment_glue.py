#!/usr/bin/env python
"""TinyBERT's data augmentation of a GLUE training set, cached on disk for distill_glue.py.

    python scripts/augment_glue.py --task_name sst2 --glue_dir ../shared/glue_data \
        --mlm_model_name_or_path bert-base-uncased --word_vectors glove.6B.300d.txt --output_dir augmented
    accelerate launch scripts/distill_glue.py --method tinybert ... --augmented_train_dir <printed folder>

Each word is replaced with probability --replace_prob by one of --top_k candidates: masked-LM predictions for words
of one word piece, nearest word vectors for longer words (kept as they are without --word_vectors). --num_copies
copies per example and text column. The result lands in --output_dir under a name that encodes the data, the masked
LM and the settings; running the same command again reuses it.
"""

from __future__ import annotations

import argparse

from bertdistill.augmentation import AugmentationConfig, augment_dataset, augmentation_path
from glue_tasks import get_task, load_glue_split


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task_name", required=True)
    parser.add_argument("--glue_dir", default=None, help="Classic GLUE folder (default: $GLUE_DIR, else the Hub).")
    parser.add_argument("--mlm_model_name_or_path", required=True, help="Any *ForMaskedLM checkpoint.")
    parser.add_argument("--word_vectors", default=None, help="GloVe-style text file for multi-piece words.")
    parser.add_argument("--output_dir", required=True, help="Cache folder of augmented sets.")
    parser.add_argument("--num_copies", type=int, default=20)
    parser.add_argument("--replace_prob", type=float, default=0.4)
    parser.add_argument("--top_k", type=int, default=15)
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--max_train_samples", type=int, default=None)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--quantize", action="store_true", help="INT8 dynamic quantization of the MLM (CPU).")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast (CPUs with AMX, recent GPUs).")
    args = parser.parse_args(argv)

    task = get_task(args.task_name)
    config = AugmentationConfig(
        args.num_copies, args.replace_prob, args.top_k, args.batch_size, args.seed, args.quantize, args.bf16
    )
    train = load_glue_split(task, "train", args.glue_dir)
    if args.max_train_samples is not None:
        train = train.select(range(min(args.max_train_samples, len(train))))
    inputs = (train, task.text_columns, args.mlm_model_name_or_path, args.output_dir, args.word_vectors, config)
    augmented = augment_dataset(*inputs)
    path = str(augmentation_path(*inputs))
    print(f"{len(train)} rows -> {len(augmented)} rows in {path}")
    return path


if __name__ == "__main__":
    main()
