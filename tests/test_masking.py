"""DistilBERT's frequency-smoothed masking and where its general mode takes the soft targets."""

import math

import numpy as np
import pytest
import torch
from test_methods import one_batch

from bertdistill.masking import SmoothedMaskingCollator, masking_weights, token_counts

from test_trainer import make_trainer


def test_weights_follow_the_smoothed_counts_and_skip_special_tokens(tokenizer):
    counts = token_counts([[1, 5, 5, 7], [5, 7, 7, 7, 7]], 10)
    assert counts.tolist() == [0, 1, 0, 0, 0, 3, 0, 5, 0, 0]
    weights = masking_weights(counts, 0.7, special_ids=[1])
    assert weights[1] == 0
    assert weights[5].item() == pytest.approx(3**-0.7) and weights[7].item() == pytest.approx(5**-0.7)
    assert weights[2].item() == pytest.approx(1.0)  # unseen tokens count as seen once
    with pytest.raises(ValueError, match="mlm_smoothing must be >= 0"):
        masking_weights(counts, -1, [])


def test_a_batch_masks_the_share_of_real_tokens_rare_ones_more_often(tokenizer):
    rows = [tokenizer("the movie was good and the film was bad"), tokenizer("the the the a movie")]
    ids = [row["input_ids"] for row in rows]
    weights = masking_weights(token_counts(ids, len(tokenizer)), 0.7, tokenizer.all_special_ids)
    collator = SmoothedMaskingCollator(tokenizer, weights, mlm_probability=0.3)
    real = sum(len(i) for i in ids)
    torch.manual_seed(0)
    chosen_counts = np.zeros(len(tokenizer))
    draws = 400
    for _ in range(draws):
        batch = collator(rows)
        chosen = batch["labels"] != -100
        assert int(chosen.sum()) == math.ceil(0.3 * real)
        assert not any(batch["labels"][chosen].eq(i).any() for i in tokenizer.all_special_ids)
        original = torch.tensor([i + [tokenizer.pad_token_id] * (batch["input_ids"].shape[1] - len(i)) for i in ids])
        assert torch.equal(batch["input_ids"][~chosen], original[~chosen])  # only chosen positions change
        np.add.at(chosen_counts, batch["labels"][chosen].numpy(), 1)
    occurrences = token_counts(ids, len(tokenizer))
    the, movie = tokenizer.convert_tokens_to_ids(["the", "movie"])
    # Per occurrence, "movie" (2 occurrences) is chosen more often than "the" (6).
    assert chosen_counts[movie] / occurrences[movie] > 1.5 * chosen_counts[the] / occurrences[the]


def test_distilbert_general_soft_targets_cover_every_real_token_by_default(tmp_path, tokenizer):
    trainer = make_trainer(tmp_path, tokenizer, method="distilbert")
    batch = one_batch(trainer)
    batch["labels"] = torch.full_like(batch["input_ids"], -100)
    batch["labels"][:, 1] = 5
    assert torch.equal(trainer.kd_token_mask(batch), batch["attention_mask"].bool())
    restricted = make_trainer(tmp_path, tokenizer, method="distilbert", restrict_kd_to_mask=True)
    assert torch.equal(restricted.kd_token_mask(batch), batch["labels"] != -100)
