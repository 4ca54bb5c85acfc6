"""TinyBERT's data augmentation (Jiao et al. 2020, Alg. 1): replace words by masked-LM or word-vector neighbours.

For every word of a sentence (whitespace-split): a word that is a single word piece gets the top-K predictions of a
masked language model at its position (the word masked, the rest of the sentence kept); a word of several pieces gets
its K nearest neighbours in a word-vector file (GloVe text format) when one is given, else no candidates. Each of the
N augmented copies then replaces every word, with probability p, by a random candidate. All masked sentences of a
batch of examples go through the masked LM together, which is what makes augmenting SST-2 practical.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import datasets
import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import AutoModelForMaskedLM, AutoTokenizer


@dataclass(frozen=True)
class AugmentationConfig:
    """Settings of TinyBERT's augmentation (the paper: N = 20 copies, p = 0.4, K = 15).

    Args:
        num_copies (`int`): augmented copies per example (per text column for sentence pairs).
        replace_prob (`float`): probability that a word with candidates is replaced in a copy.
        top_k (`int`): candidates per word.
        batch_size (`int`): masked sentences per masked-LM forward.
        seed (`int`): seed of the random choices.
    """

    num_copies: int = 20
    replace_prob: float = 0.4
    top_k: int = 15
    batch_size: int = 256
    seed: int = 42

    def __post_init__(self):
        if self.num_copies < 1 or self.top_k < 1 or self.batch_size < 1:
            raise ValueError("num_copies, top_k and batch_size must be >= 1")
        if not 0 <= self.replace_prob <= 1:
            raise ValueError(f"replace_prob must be in [0, 1], got {self.replace_prob}")


def load_word_vectors(path: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """Words and L2-normalised vectors from a GloVe-style text file (`word v1 v2 ...` per line)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Word-vector file not found: {path}")
    words, rows = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip().split(" ")
            if len(parts) > 2:
                words.append(parts[0])
                rows.append(np.asarray(parts[1:], dtype=np.float32))
    matrix = np.stack(rows)
    return words, matrix / np.linalg.norm(matrix, axis=1, keepdims=True).clip(1e-8)


class Augmenter:
    """Candidate words from a masked LM (single-piece words) and word vectors (multi-piece words).

    Args:
        mlm_model_name_or_path (`str`): any `*ForMaskedLM` checkpoint with its tokenizer.
        word_vectors (`str`, *optional*): GloVe-style text file for words of several word pieces.
        config (`AugmentationConfig`): settings.
    """

    def __init__(self, mlm_model_name_or_path: str, word_vectors: str | None = None, config=AugmentationConfig()):
        self.config = config
        self.tokenizer = AutoTokenizer.from_pretrained(mlm_model_name_or_path)
        self.model = AutoModelForMaskedLM.from_pretrained(mlm_model_name_or_path).eval()
        # Only whole-word, non-special, alphabetic pieces are allowed as replacements.
        self.allowed = torch.zeros(self.model.config.vocab_size, dtype=torch.bool)
        special = set(self.tokenizer.all_special_tokens)
        for token, index in self.tokenizer.get_vocab().items():
            if index < len(self.allowed) and token.isalpha() and token not in special:
                self.allowed[index] = True
        self.vector_words, self.vectors = load_word_vectors(word_vectors) if word_vectors else ([], None)
        self.vector_index = {w: i for i, w in enumerate(self.vector_words)}

    def _neighbours(self, word: str) -> list[str]:
        index = self.vector_index.get(word.lower())
        if index is None or self.vectors is None:
            return []
        similarity = self.vectors @ self.vectors[index]
        similarity[index] = -np.inf
        best = np.argpartition(-similarity, min(self.config.top_k, len(similarity) - 1))[: self.config.top_k]
        return [self.vector_words[i] for i in best[np.argsort(-similarity[best])]]

    @torch.no_grad()
    def candidates(self, sentences: list[str]) -> list[list[list[str]]]:
        """For each sentence, for each whitespace word, its replacement candidates (possibly none)."""
        split = [sentence.split() for sentence in sentences]
        result = [[[] for _ in words] for words in split]
        queries = []  # (sentence index, word index, masked text)
        for s, words in enumerate(split):
            for w, word in enumerate(words):
                if len(self.tokenizer.tokenize(word)) == 1:
                    masked = " ".join(words[:w] + [self.tokenizer.mask_token] + words[w + 1 :])
                    queries.append((s, w, masked))
                else:
                    result[s][w] = self._neighbours(word)
        for start in range(0, len(queries), self.config.batch_size):
            chunk = queries[start : start + self.config.batch_size]
            # A mask cut off by truncation leaves that word without candidates.
            batch = self.tokenizer([q[2] for q in chunk], padding=True, truncation=True, return_tensors="pt",
                                   max_length=self.model.config.max_position_embeddings)  # fmt: skip
            logits = self.model(**batch).logits
            positions = (batch["input_ids"] == self.tokenizer.mask_token_id).nonzero()
            for row, column in positions.tolist():
                s, w, _ = chunk[row]
                scores = logits[row, column].masked_fill(~self.allowed, float("-inf"))
                ids = scores.topk(self.config.top_k + 1).indices.tolist()
                words = [t for t in self.tokenizer.convert_ids_to_tokens(ids) if t != split[s][w].lower()]
                result[s][w] = words[: self.config.top_k]
        return result

    def augment(self, sentences: list[str], rng: random.Random) -> list[list[str]]:
        """`num_copies` augmented versions of each sentence."""
        copies = []
        for words, options in zip((s.split() for s in sentences), self.candidates(sentences)):
            copies.append([
                " ".join(rng.choice(opts) if opts and rng.random() < self.config.replace_prob else word
                         for word, opts in zip(words, options))
                for _ in range(self.config.num_copies)
            ])  # fmt: skip
        return copies


def cache_key(dataset: datasets.Dataset, text_columns: tuple[str, ...], mlm: str, vectors: str | None, config) -> str:
    """Changes whenever the rows, the columns, the masked LM, the vectors or the settings change."""

    def stamp(path):
        if path is None:
            return None
        files = sorted(Path(path).glob("*")) if Path(path).is_dir() else [Path(path)]
        return [(f.name, f.stat().st_size, int(f.stat().st_mtime)) for f in files if f.is_file()]

    local = os.path.exists(mlm)
    payload = {
        "data": dataset._fingerprint,
        "columns": text_columns,
        "mlm": os.path.abspath(mlm) if local else mlm,
        "mlm_files": stamp(mlm) if local else None,
        "vectors": stamp(vectors),
        "config": asdict(config),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def augmentation_path(
    dataset, text_columns, mlm_model_name_or_path, cache_dir, word_vectors=None, config=None
) -> Path:
    """Folder in `cache_dir` where [`augment_dataset`] keeps (and finds) the augmented set for these inputs."""
    key = cache_key(dataset, text_columns, mlm_model_name_or_path, word_vectors, config or AugmentationConfig())
    return Path(cache_dir) / f"augmented-{key}"


def augment_dataset(
    dataset: datasets.Dataset,
    text_columns: tuple[str, ...],
    mlm_model_name_or_path: str,
    cache_dir: str | os.PathLike,
    word_vectors: str | None = None,
    config: AugmentationConfig = AugmentationConfig(),
    chunk_size: int = 64,
) -> datasets.Dataset:
    """The original rows followed by `num_copies` augmented copies per row and text column, cached in `cache_dir`.

    For a sentence pair each column is augmented on its own (the other kept), as TinyBERT does. A second call with
    the same rows, columns, masked LM, vectors and settings loads the cached set instead of recomputing it.
    """
    path = augmentation_path(dataset, text_columns, mlm_model_name_or_path, cache_dir, word_vectors, config)
    if (path / "dataset_info.json").is_file():
        return datasets.load_from_disk(str(path))
    augmenter = Augmenter(mlm_model_name_or_path, word_vectors, config)
    rng = random.Random(config.seed)
    rows = {name: list(dataset[name]) for name in dataset.column_names}
    new_rows: dict[str, list] = {name: [] for name in dataset.column_names}
    with tqdm(total=len(dataset) * len(text_columns), desc="Augmenting", unit="text") as progress:
        for column in text_columns:
            for start in range(0, len(dataset), chunk_size):
                stop = min(start + chunk_size, len(dataset))
                for offset, copies in enumerate(augmenter.augment(rows[column][start:stop], rng)):
                    for text in copies:
                        for name in dataset.column_names:
                            new_rows[name].append(text if name == column else rows[name][start + offset])
                progress.update(stop - start)
    augmented = datasets.concatenate_datasets(
        [dataset, datasets.Dataset.from_dict(new_rows, features=dataset.features)]
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    augmented.save_to_disk(str(path))
    return augmented
