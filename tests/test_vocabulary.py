"""Vocabulary pruning: the same pieces and logits on the corpus from a stock checkpoint + tokenizer (loaded without
bertdistill), unseen words to pieces or [UNK] as documented, a masked-LM head cut alike, bad inputs refused."""

import subprocess
import sys

import pytest
import torch
from transformers import BertForMaskedLM

from bertdistill.compression.vocabulary import (
    count_unknown,
    prune_vocabulary,
    read_corpus_file,
    task_corpus,
    used_token_ids,
)

from conftest import make_teacher, save_with_tokenizer, tiny_config

CORPUS = ["the movie is good", "a bad film, not good", "it was the film of the year"]


def test_pruned_checkpoint_gives_the_same_pieces_and_logits_without_bertdistill(tokenizer, tmp_path):
    model = make_teacher(tokenizer, dropout=0.0).eval()
    pruned, pruned_tokenizer, report = prune_vocabulary(model, tokenizer, CORPUS, keep_characters=False)
    assert report.original_size == len(tokenizer) and report.kept_size == len(pruned_tokenizer) < len(tokenizer)
    assert report.kept_ids == used_token_ids(tokenizer, CORPUS)
    assert pruned.config.vocab_size == report.kept_size == pruned.get_input_embeddings().num_embeddings
    assert model.config.vocab_size == len(tokenizer), "the input model is left as it was"
    for name in ("pad", "cls", "sep", "unk", "mask"):
        old, new = getattr(tokenizer, f"{name}_token_id"), getattr(pruned_tokenizer, f"{name}_token_id")
        assert report.kept_ids[new] == old
    folder = save_with_tokenizer(pruned, pruned_tokenizer, tmp_path / "pruned")
    code = f"""
import sys, torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
model = AutoModelForSequenceClassification.from_pretrained({str(folder)!r}).eval()
tokenizer = AutoTokenizer.from_pretrained({str(folder)!r})
assert not any(m.startswith("bertdistill") for m in sys.modules)
encoded = tokenizer({CORPUS!r}, padding=True, return_tensors="pt")
with torch.no_grad():
    torch.save((encoded["input_ids"], model(**encoded).logits), {str(tmp_path / "out.pt")!r})
"""
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)
    ids, logits = torch.load(tmp_path / "out.pt")
    original = tokenizer(CORPUS, padding=True, return_tensors="pt")
    assert torch.equal(torch.tensor(report.kept_ids)[ids], original["input_ids"]), "the same pieces, renumbered"
    with torch.no_grad():
        expected = model(**original).logits
        # The embedding rows are the same numbers (bit for bit); the logits are equal to float tolerance only, as
        # for any copy of a model: oneDNN picks kernels by memory alignment.
        encoded = pruned_tokenizer(CORPUS, padding=True, return_tensors="pt")
        assert torch.equal(pruned.bert.embeddings(input_ids=encoded["input_ids"]),
                           model.bert.embeddings(input_ids=original["input_ids"]))  # fmt: skip
    torch.testing.assert_close(logits, expected, atol=1e-6, rtol=1e-6)


def test_unseen_words_split_into_kept_characters_or_become_unknown(tokenizer):
    model = make_teacher(tokenizer)
    _, without, _ = prune_vocabulary(model, tokenizer, CORPUS, keep_characters=False)
    _, with_characters, report = prune_vocabulary(model, tokenizer, CORPUS, keep_characters=True)
    assert without.tokenize("zebra") == ["[UNK]"]
    assert with_characters.tokenize("zebra") == tokenizer.tokenize("zebra") == ["z", "##e", "##b", "##r", "##a"]
    assert with_characters.tokenize("the film") == ["the", "film"]
    assert count_unknown(without, ["zebra good", "the"]) == (1, 3)
    assert count_unknown(with_characters, ["zebra good"]) == (0, 6)
    assert report.kept_size > len(without)


def test_masked_lm_head_rows_follow(tokenizer):
    torch.manual_seed(0)
    model = BertForMaskedLM(tiny_config(len(tokenizer), dropout=0.0)).eval()
    pruned, pruned_tokenizer, report = prune_vocabulary(model, tokenizer, CORPUS, keep_characters=False)
    with torch.no_grad():
        new = pruned(**pruned_tokenizer(CORPUS[:1], return_tensors="pt")).logits
        old = model(**tokenizer(CORPUS[:1], return_tensors="pt")).logits
    torch.testing.assert_close(new, old[..., report.kept_ids], atol=1e-6, rtol=1e-6)
    assert pruned.get_output_embeddings().weight.shape[0] == report.kept_size


def test_bad_inputs(tokenizer, tmp_path):
    model = make_teacher(tokenizer)
    with pytest.raises(ValueError, match="non-empty corpus"):
        prune_vocabulary(model, tokenizer, [])
    with pytest.raises(ValueError, match=r"keep_ids \[9999\] are not ids"):
        prune_vocabulary(model, tokenizer, CORPUS, keep_ids=[9999])
    with pytest.raises(ValueError, match="needs a fast tokenizer, got object"):
        prune_vocabulary(model, object(), CORPUS)
    with pytest.raises(FileNotFoundError, match="corpus file not found"):
        read_corpus_file(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("\n  \n")
    with pytest.raises(ValueError, match="is empty"):
        read_corpus_file(tmp_path / "empty.txt")
    (tmp_path / "corpus.txt").write_text("one text\n\nanother\n")
    assert read_corpus_file(tmp_path / "corpus.txt") == ["one text", "another"]


def test_task_corpus_reads_every_text_column(glue_dir):
    texts = task_corpus("rte", glue_dir, ["validation"])
    assert len(texts) == 2 * 277  # sentence1 and sentence2 of every dev row
