"""TinyBERT data augmentation with a tiny random BertForMaskedLM and a small word-vector file."""

import random

import datasets
import pytest
import torch
from transformers import BertForMaskedLM

from bertdistill.augmentation import AugmentationConfig, Augmenter, augment_dataset, load_word_vectors

from conftest import tiny_config


@pytest.fixture
def mlm_dir(tmp_path, tokenizer):
    torch.manual_seed(0)
    path = tmp_path / "mlm"
    BertForMaskedLM(tiny_config(len(tokenizer))).eval().save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def vectors(tmp_path):
    path = tmp_path / "vectors.txt"
    path.write_text("splendid 1 0 0\nwonderful 0.9 0.1 0\nterrible 0 1 0\nawful 0 0.9 0.1\nthe 0 0 1\n")
    return path


def test_candidates_come_from_the_mlm_for_single_pieces_and_vectors_otherwise(mlm_dir, vectors):
    augmenter = Augmenter(str(mlm_dir), str(vectors), AugmentationConfig(top_k=3))
    # "the", "good", "film" are whole words of the tiny vocabulary; "splendid" is split into character pieces.
    (candidates,) = augmenter.candidates(["the good splendid film"])
    assert [len(c) for c in candidates] == [3, 3, 3, 3]
    assert candidates[2][0] == "wonderful"  # nearest neighbour by cosine
    assert set(candidates[2]) <= {"wonderful", "terrible", "awful", "the"}
    vocab = set(augmenter.tokenizer.get_vocab())
    for word, options in zip(["the", "good", "film"], [candidates[0], candidates[1], candidates[3]]):
        assert word not in options and all(o in vocab and o.isalpha() for o in options)
    assert Augmenter(str(mlm_dir)).candidates(["splendid"]) == [[[]]]  # no vectors: multi-piece words stay


def test_copies_replace_words_with_the_given_probability(mlm_dir):
    never = Augmenter(str(mlm_dir), config=AugmentationConfig(num_copies=3, replace_prob=0.0))
    assert never.augment(["the good film"], random.Random(0)) == [["the good film"] * 3]
    always = Augmenter(str(mlm_dir), config=AugmentationConfig(num_copies=4, replace_prob=1.0, top_k=5))
    (copies,) = always.augment(["the good film"], random.Random(0))
    assert len(copies) == 4 and all(len(c.split()) == 3 and c != "the good film" for c in copies)
    with pytest.raises(ValueError, match="replace_prob"):
        AugmentationConfig(replace_prob=1.5)
    with pytest.raises(FileNotFoundError, match="Word-vector file not found"):
        load_word_vectors("/nonexistent/glove.txt")


def test_pairs_are_augmented_column_by_column_and_cached(mlm_dir, tmp_path, monkeypatch):
    data = datasets.Dataset.from_dict(
        {"sentence1": ["the good film", "a bad movie"], "sentence2": ["it was good", "not good"], "label": [0, 1],
         "idx": [0, 1]}
    )  # fmt: skip
    config = AugmentationConfig(num_copies=2, replace_prob=0.5)
    out = augment_dataset(data, ("sentence1", "sentence2"), str(mlm_dir), tmp_path / "cache", config=config)
    assert len(out) == 2 + 2 * 2 * 2
    extra = out.select(range(2, len(out)))
    first, second = extra.select(range(4)), extra.select(range(4, 8))
    assert list(first["sentence2"]) == ["it was good"] * 2 + ["not good"] * 2  # column 1 augmented, 2 kept
    assert list(second["sentence1"]) == ["the good film"] * 2 + ["a bad movie"] * 2
    assert list(extra["label"]) == [0, 0, 1, 1, 0, 0, 1, 1]

    def fail(*args, **kwargs):
        raise AssertionError("recomputed instead of reusing the cache")

    monkeypatch.setattr(Augmenter, "__init__", fail)
    again = augment_dataset(data, ("sentence1", "sentence2"), str(mlm_dir), tmp_path / "cache", config=config)
    assert list(again["sentence1"]) == list(out["sentence1"])
    with pytest.raises(AssertionError, match="recomputed"):  # other settings: a new set
        augment_dataset(data, ("sentence1", "sentence2"), str(mlm_dir), tmp_path / "cache",
                        config=AugmentationConfig(num_copies=3))  # fmt: skip


def test_augment_glue_then_distill_on_the_augmented_set(mlm_dir, teacher_dir, glue_dir, tmp_path):
    from test_scripts import distill_args, distill_glue

    from conftest import load_script

    path = load_script("augment_glue").main([
        "--task_name", "rte", "--glue_dir", str(glue_dir), "--mlm_model_name_or_path", str(mlm_dir),
        "--output_dir", str(tmp_path / "aug"), "--num_copies", "2", "--max_train_samples", "8",
    ])  # fmt: skip
    assert len(datasets.load_from_disk(path)) == 8 + 8 * 2 * 2
    out = tmp_path / "student"
    distill_glue.main(distill_args(teacher_dir, glue_dir, out, "rte", "--student_num_layers", "2",
                                   "--augmented_train_dir", path))  # fmt: skip
    assert (out / "eval_results.json").is_file()


def test_head_at_mask_positions_and_length_sorting_only_change_speed(mlm_dir):
    fast = Augmenter(str(mlm_dir))
    plain = Augmenter(str(mlm_dir), fast_head=False, sort_by_length=False)
    assert fast._head is fast.model.cls  # BERT's head is found beside the encoder
    texts = ["the [MASK] film", "a good [MASK] that was not bad at all", "[MASK]"]
    torch.testing.assert_close(fast.mask_logits(texts), plain.mask_logits(texts), atol=1e-5, rtol=1e-5)
    alone = plain.tokenizer(texts[1], return_tensors="pt")
    position = alone["input_ids"][0].tolist().index(plain.tokenizer.mask_token_id)
    reference = plain.model(**alone).logits[0, position]
    torch.testing.assert_close(fast.mask_logits(texts)[1], reference, atol=1e-5, rtol=1e-5)
    sentences = ["the good film", "a bad movie that was not good at all", "good"]
    assert fast.candidates(sentences) == plain.candidates(sentences)


def test_an_interrupted_augmentation_resumes_to_the_same_set(mlm_dir, tmp_path, monkeypatch):
    data = datasets.Dataset.from_dict(
        {
            "sentence": ["the good film", "a bad movie", "not good", "it was the film", "good good"],
            "label": [1, 0, 0, 1, 1],
        }
    )
    config = AugmentationConfig(num_copies=3, replace_prob=0.5)
    whole = augment_dataset(data, ("sentence",), str(mlm_dir), tmp_path / "a", config=config, chunk_size=5)

    calls = []
    original = Augmenter.augment

    def crash_on_second_chunk(self, sentences, rng):
        calls.append(len(sentences))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, sentences, rng)

    monkeypatch.setattr(Augmenter, "augment", crash_on_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        augment_dataset(data, ("sentence",), str(mlm_dir), tmp_path / "b", config=config, chunk_size=2)
    monkeypatch.setattr(Augmenter, "augment", lambda self, s, r: (calls.append(len(s)), original(self, s, r))[1])
    resumed = augment_dataset(data, ("sentence",), str(mlm_dir), tmp_path / "b", config=config, chunk_size=2)
    assert calls == [2, 2, 2, 1]  # the finished first chunk was not redone
    assert list(resumed["sentence"]) == list(whole["sentence"])  # and chunking did not change the result
    assert not list((tmp_path / "b").glob("*.partial"))


def test_quantized_mlm_still_gives_whole_word_candidates(mlm_dir):
    augmenter = Augmenter(str(mlm_dir), config=AugmentationConfig(top_k=3, quantize=True))
    assert "quantized" in type(augmenter.model.cls.predictions.decoder).__module__
    (candidates,) = augmenter.candidates(["the good film"])
    vocab = set(augmenter.tokenizer.get_vocab())
    assert [len(c) for c in candidates] == [3, 3, 3] and all(o in vocab for c in candidates for o in c)


def test_bf16_autocast_keeps_the_candidates_close_and_refuses_int8_with_it(mlm_dir):
    fp32 = Augmenter(str(mlm_dir), config=AugmentationConfig(top_k=5), device="cpu")
    bf16 = Augmenter(str(mlm_dir), config=AugmentationConfig(top_k=5, bf16=True), device="cpu")
    texts = ["the [MASK] film", "a good [MASK] that was not bad at all"]
    reference, low = fp32.mask_logits(texts), bf16.mask_logits(texts)
    assert low.dtype == torch.float32 and not torch.equal(low, reference)  # autocast did run in bf16
    torch.testing.assert_close(low, reference, atol=0.1, rtol=0.05)
    sentences = ["the good film", "a bad movie that was not good at all"]
    overlap = [
        len(set(a) & set(b)) / max(len(a), 1)
        for x, y in zip(fp32.candidates(sentences), bf16.candidates(sentences))
        for a, b in zip(x, y)
    ]
    assert sum(overlap) / len(overlap) >= 0.6
    with pytest.raises(ValueError, match="alternatives"):
        AugmentationConfig(quantize=True, bf16=True)
