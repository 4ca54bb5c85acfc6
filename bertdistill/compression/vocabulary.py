"""Vocabulary pruning: keep only the word pieces a corpus uses, in the tokenizer and in the embedding rows.

A 3-layer MiniLM student spends 11.7 M of its 17.4 M parameters on the 30522 x 384 word embeddings, and a GLUE task
uses a fraction of those pieces. [`prune_vocabulary`] keeps the pieces the corpus tokenizes into (plus the special
tokens, and by default every single-character piece of the characters the corpus and ASCII use), renumbers them
contiguously in their old order, and cuts the word-embedding rows (and a masked-LM decoder's rows) to match. The
result is a stock checkpoint and fast tokenizer: on every text of the corpus it gives the same pieces, hence the same
logits, as before.

Text outside the corpus: WordPiece splits each word greedily into the longest pieces that remain; a word that no
remaining pieces spell becomes `[UNK]`. With `keep_characters` (the default) the single characters and their `##`
continuations remain, so an unseen word of known characters still splits into pieces (short ones, so its meaning is
blurred, but not `[UNK]`); without it, the word becomes `[UNK]` unless its pieces were used elsewhere in the corpus.
[`count_unknown`] measures it, e.g. on the dev set when only training text was kept.
"""

from __future__ import annotations

import copy
import json
import os
import string
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import AutoTokenizer, PreTrainedModel

from glue_tasks import get_task, load_glue_split

CONTINUATION = "##"


def task_corpus(task_name: str, glue_dir: str | os.PathLike | None, splits: Iterable[str] = ("train",)) -> list[str]:
    """Every text of those splits of a GLUE task (each text column of every row)."""
    task = get_task(task_name)
    texts = []
    for split in splits:
        dataset = load_glue_split(task, split, glue_dir)
        for column in task.text_columns:
            texts.extend(t for t in dataset[column] if t)
    return texts


def read_corpus_file(path: str | os.PathLike) -> list[str]:
    """The non-empty lines of a text file, one text each."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"corpus file not found: {path}")
    texts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not texts:
        raise ValueError(f"corpus file {path} is empty")
    return texts


def _check_fast_wordpiece(tokenizer) -> dict:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ValueError(f"vocabulary pruning needs a fast tokenizer, got {type(tokenizer).__name__}")
    state = json.loads(backend.to_str())
    if state["model"]["type"] != "WordPiece":
        raise ValueError(f"vocabulary pruning supports WordPiece tokenizers (BERT's), got {state['model']['type']}")
    return state


def used_token_ids(tokenizer, texts: Iterable[str], batch_size: int = 1000) -> list[int]:
    """Sorted ids of every piece the tokenizer produces on `texts`, plus every special token."""
    texts = list(texts)
    used = set(tokenizer.all_special_ids)
    for start in range(0, len(texts), batch_size):
        for ids in tokenizer(texts[start : start + batch_size], add_special_tokens=False)["input_ids"]:
            used.update(ids)
    return sorted(used)


def character_ids(tokenizer, texts: Iterable[str]) -> list[int]:
    """Ids of the single-character pieces (and their `##` forms) of every ASCII character and every character of
    `texts` (lower-cased when the tokenizer lower-cases)."""
    characters = set(string.printable.strip())
    for text in texts:
        characters.update(text.lower() if getattr(tokenizer, "do_lower_case", True) else text)
    vocab = tokenizer.get_vocab()
    return sorted(vocab[p] for c in characters for p in (c, CONTINUATION + c) if p in vocab)


@dataclass
class VocabularyPruning:
    """What [`prune_vocabulary`] kept: `kept_ids[i]` is the old id of new id `i`."""

    original_size: int
    kept_size: int
    kept_ids: list[int]

    def to_dict(self, with_ids: bool = False) -> dict:
        values = asdict(self)
        if not with_ids:
            values.pop("kept_ids")
        return values


def prune_vocabulary(
    model: PreTrainedModel,
    tokenizer,
    texts: Iterable[str],
    keep_characters: bool = True,
    keep_ids: Iterable[int] | None = None,
) -> tuple[PreTrainedModel, object, VocabularyPruning]:
    """A copy of `model` and of its fast WordPiece `tokenizer` that know only the pieces `texts` use.

    Args:
        model (`PreTrainedModel`): left unchanged; its word embeddings (and output embeddings, if any) are cut.
        tokenizer: a fast WordPiece tokenizer (BERT's).
        texts (`Iterable[str]`): the corpus.
        keep_characters (`bool`, *optional*, defaults to `True`): also keep the single-character pieces (see the
            module docstring).
        keep_ids (`Iterable[int]`, *optional*): old ids to keep as well.

    Returns:
        `(model, tokenizer, VocabularyPruning)`.
    """
    state = _check_fast_wordpiece(tokenizer)
    texts = list(texts)
    if not texts:
        raise ValueError("prune_vocabulary needs a non-empty corpus")
    size = len(state["model"]["vocab"])
    if sorted(state["model"]["vocab"].values()) != list(range(size)):
        raise ValueError("the tokenizer's vocabulary is not one piece per id 0..N-1; it cannot be renumbered")
    rows = model.get_input_embeddings().num_embeddings
    if rows < size:
        raise ValueError(f"the tokenizer has {size} pieces but the model only {rows} embedding rows")
    kept = set(used_token_ids(tokenizer, texts))
    if keep_characters:
        kept.update(character_ids(tokenizer, texts))
    if keep_ids is not None:
        extra = set(keep_ids)
        bad = sorted(i for i in extra if not 0 <= i < size)
        if bad:
            raise ValueError(f"keep_ids {bad[:5]} are not ids of the {size}-piece vocabulary")
        kept.update(extra)
    kept_ids = sorted(kept)
    new_id = {old: new for new, old in enumerate(kept_ids)}

    by_id = {i: piece for piece, i in state["model"]["vocab"].items()}
    state["model"]["vocab"] = {by_id[old]: new for new, old in enumerate(kept_ids)}
    for token in state["added_tokens"]:
        token["id"] = new_id[token["id"]]
    _remap_post_processor(state.get("post_processor"), new_id)
    new_tokenizer = _rebuilt_tokenizer(tokenizer, state)

    pruned = copy.deepcopy(model)
    index = torch.tensor(kept_ids)
    with torch.no_grad():
        old = pruned.get_input_embeddings()
        pad = new_id.get(old.padding_idx) if old.padding_idx is not None else None
        rows = nn.Embedding(len(kept_ids), old.embedding_dim, padding_idx=pad)
        rows.weight.copy_(old.weight[index])
        pruned.set_input_embeddings(rows)
        output = pruned.get_output_embeddings()
        if output is not None:
            decoder = nn.Linear(output.in_features, len(kept_ids), bias=output.bias is not None)
            decoder.weight.copy_(output.weight[index])
            if output.bias is not None:
                decoder.bias.copy_(output.bias[index])
            pruned.set_output_embeddings(decoder)
            if getattr(pruned.config, "tie_word_embeddings", False):
                decoder.weight = rows.weight
    pruned.config.vocab_size = len(kept_ids)
    if pruned.config.pad_token_id is not None:
        pruned.config.pad_token_id = new_id[pruned.config.pad_token_id]
    return pruned, new_tokenizer, VocabularyPruning(size, len(kept_ids), kept_ids)


def _remap_post_processor(processor: dict | None, new_id: dict[int, int]) -> None:
    if not processor:
        return
    if processor["type"] == "Sequence":
        for item in processor["processors"]:
            _remap_post_processor(item, new_id)
    elif processor["type"] == "TemplateProcessing":
        for token in processor["special_tokens"].values():
            token["ids"] = [new_id[i] for i in token["ids"]]
    elif processor["type"] in ("BertProcessing", "RobertaProcessing"):
        for key in ("sep", "cls"):
            processor[key] = [processor[key][0], new_id[processor[key][1]]]


def _rebuilt_tokenizer(tokenizer, state: dict):
    """The tokenizer with the edited backend state, through a save and load so every setting (special tokens,
    lower-casing, model_max_length) is what `from_pretrained` gives a user."""
    with tempfile.TemporaryDirectory() as folder:
        tokenizer.save_pretrained(folder)
        for name in ("vocab.txt", "added_tokens.json", "special_tokens_map.json"):
            (Path(folder) / name).unlink(missing_ok=True)
        (Path(folder) / "tokenizer.json").write_text(json.dumps(state, ensure_ascii=False), encoding="utf-8")
        vocab = sorted(state["model"]["vocab"], key=state["model"]["vocab"].get)
        (Path(folder) / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
        return AutoTokenizer.from_pretrained(folder)


def count_unknown(tokenizer, texts: Iterable[str], batch_size: int = 1000) -> tuple[int, int]:
    """`([UNK] pieces, all pieces)` of `texts`, special tokens not counted."""
    texts, unknown, total = list(texts), 0, 0
    for start in range(0, len(texts), batch_size):
        for ids in tokenizer(texts[start : start + batch_size], add_special_tokens=False)["input_ids"]:
            unknown += sum(i == tokenizer.unk_token_id for i in ids)
            total += len(ids)
    return unknown, total
