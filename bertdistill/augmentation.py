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
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import datasets
import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import AutoModelForMaskedLM, AutoTokenizer

from .compression.quantization import quantize_dynamic_int8


@dataclass(frozen=True)
class AugmentationConfig:
    """Settings of TinyBERT's augmentation (the paper: N = 20 copies, p = 0.4, K = 15).

    Args:
        num_copies (`int`): augmented copies per example (per text column for sentence pairs).
        replace_prob (`float`): probability that a word with candidates is replaced in a copy.
        top_k (`int`): candidates per word.
        batch_size (`int`): masked sentences per masked-LM forward.
        seed (`int`): seed of the random choices.
        quantize (`bool`): run the masked LM with INT8 dynamic quantization of its linear layers (CPU only; about
            1.4x faster for a BERT-base on 2 cores; candidates can differ slightly from the fp32 model's).
        bf16 (`bool`): run the masked LM under bfloat16 autocast (on the model's device). Fast where the hardware
            multiplies bf16 natively (CPUs with AMX or AVX512-BF16, recent GPUs), slower elsewhere; candidates can
            differ slightly from the fp32 model's. Not with `quantize`.
    """

    num_copies: int = 20
    replace_prob: float = 0.4
    top_k: int = 15
    batch_size: int = 256
    seed: int = 42
    quantize: bool = False
    bf16: bool = False

    def __post_init__(self):
        if self.num_copies < 1 or self.top_k < 1 or self.batch_size < 1:
            raise ValueError("num_copies, top_k and batch_size must be >= 1")
        if self.quantize and self.bf16:
            raise ValueError("quantize (INT8) and bf16 are alternatives: choose one")
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
        fast_head (`bool`, defaults to `True`): run the masked-LM head only at the mask positions (when the head is
            one module beside the encoder; else the model's full forward).
        sort_by_length (`bool`, defaults to `True`): batch masked sentences of similar lengths together.
        (Both only change speed, not the candidates; `scripts/checks/benchmark_augmentation.py` measures each.)
        device (`str`, *optional*): where the masked LM runs; default: CUDA when available (the paper augmented on
            GPUs), else the CPU. INT8 quantization runs on the CPU only.
    """

    def __init__(
        self,
        mlm_model_name_or_path: str,
        word_vectors: str | None = None,
        config=AugmentationConfig(),
        fast_head: bool = True,
        sort_by_length: bool = True,
        device: str | None = None,
    ):
        self.config = config
        self.sort_by_length = sort_by_length
        if device is None:
            device = "cuda" if torch.cuda.is_available() and not config.quantize else "cpu"
        if config.quantize and torch.device(device).type != "cpu":
            raise ValueError(f"INT8 dynamic quantization runs on the CPU only, got device {device!r}")
        self.tokenizer = AutoTokenizer.from_pretrained(mlm_model_name_or_path)
        self.model = AutoModelForMaskedLM.from_pretrained(mlm_model_name_or_path).eval().to(device)
        if config.quantize:
            self.model = quantize_dynamic_int8(self.model)
        self._head = self._find_head() if fast_head else None
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

    def _find_head(self) -> torch.nn.Module | None:
        """The masked-LM head when it is one module beside the encoder (BERT's `cls`, RoBERTa's `lm_head`)."""
        base = self.model.base_model
        heads = [m for m in self.model.children() if m is not base and any(True for _ in m.parameters())]
        return heads[0] if len(heads) == 1 else None

    @torch.inference_mode()
    def mask_logits(self, texts: list[str]) -> torch.Tensor:
        """Vocabulary scores at the (first) mask token of each text, `(len(texts), vocab)`; NaN rows where
        truncation cut the mask off. The head runs only at the mask positions when the model allows it: the
        vocabulary projection of every position would otherwise cost a BERT-base about a quarter of its time."""
        batch = self.tokenizer(texts, padding=True, truncation=True, return_tensors="pt",
                               max_length=self.model.config.max_position_embeddings)  # fmt: skip
        batch = batch.to(self.model.device)
        is_mask = batch["input_ids"] == self.tokenizer.mask_token_id
        found = is_mask.any(dim=1)
        position = is_mask.int().argmax(dim=1)
        rows = torch.arange(len(texts), device=self.model.device)
        with torch.autocast(self.model.device.type, dtype=torch.bfloat16, enabled=self.config.bf16):
            if self._head is not None:
                logits = self._head(self.model.base_model(**batch).last_hidden_state[rows, position])
            else:
                logits = self.model(**batch).logits[rows, position]
        return logits.float().masked_fill(~found[:, None], float("nan")).cpu()

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
        # Batches of similar lengths waste little on padding.
        if self.sort_by_length:
            queries.sort(key=lambda q: len(split[q[0]]))
        for start in range(0, len(queries), self.config.batch_size):
            chunk = queries[start : start + self.config.batch_size]
            logits = self.mask_logits([q[2] for q in chunk])
            for (s, w, _), scores in zip(chunk, logits):
                if scores.isnan().all():  # the mask was cut off by truncation: no candidates
                    continue
                ids = scores.masked_fill(~self.allowed, float("-inf")).topk(self.config.top_k + 1).indices.tolist()
                words = [t for t in self.tokenizer.convert_ids_to_tokens(ids) if t != split[s][w].lower()]
                result[s][w] = words[: self.config.top_k]
        return result

    def augment(self, sentences: list[str], rng: random.Random | list[random.Random]) -> list[list[str]]:
        """`num_copies` augmented versions of each sentence; `rng` is one generator or one per sentence."""
        rngs = rng if isinstance(rng, list) else [rng] * len(sentences)
        copies = []
        for words, options, r in zip((s.split() for s in sentences), self.candidates(sentences), rngs):
            copies.append([
                " ".join(r.choice(opts) if opts and r.random() < self.config.replace_prob else word
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
    chunk_size: int = 512,
) -> datasets.Dataset:
    """The original rows followed by `num_copies` augmented copies per row and text column, cached in `cache_dir`.

    For a sentence pair each column is augmented on its own (the other kept), as TinyBERT does. A second call with
    the same rows, columns, masked LM, vectors and settings loads the cached set instead of recomputing it. Work is
    kept in `<cache folder>.partial/` every `chunk_size` rows, so an interrupted call resumes where it stopped; each
    row has its own random generator (seeded by the seed, the column and the row), so the result does not depend on
    the chunking or on interruptions.
    """
    path = augmentation_path(dataset, text_columns, mlm_model_name_or_path, cache_dir, word_vectors, config)
    if (path / "dataset_info.json").is_file():
        return datasets.load_from_disk(str(path))
    partial = path.with_name(path.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    rows = {name: list(dataset[name]) for name in dataset.column_names}
    chunks = [(column, start) for column in text_columns for start in range(0, len(dataset), chunk_size)]
    augmenter = None
    new_rows: dict[str, list] = {name: [] for name in dataset.column_names}
    with tqdm(total=len(dataset) * len(text_columns), desc="Augmenting", unit="text") as progress:
        for column, start in chunks:
            stop = min(start + chunk_size, len(dataset))
            shard = partial / f"{text_columns.index(column)}-{start:010d}.json"
            if shard.is_file():
                copies = json.loads(shard.read_text(encoding="utf-8"))
            else:
                augmenter = augmenter or Augmenter(mlm_model_name_or_path, word_vectors, config)
                rngs = [random.Random(f"{config.seed}-{column}-{i}") for i in range(start, stop)]
                copies = augmenter.augment(rows[column][start:stop], rngs)
                scratch = shard.with_suffix(".tmp")
                scratch.write_text(json.dumps(copies), encoding="utf-8")
                scratch.replace(shard)  # atomic: a shard is either complete or absent
            for offset, texts in enumerate(copies):
                for text in texts:
                    for name in dataset.column_names:
                        new_rows[name].append(text if name == column else rows[name][start + offset])
            progress.update(stop - start)
    augmented = datasets.concatenate_datasets(
        [dataset, datasets.Dataset.from_dict(new_rows, features=dataset.features)]
    )
    augmented.save_to_disk(str(path))
    shutil.rmtree(partial)
    return augmented
