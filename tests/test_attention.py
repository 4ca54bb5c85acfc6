"""Pre-softmax attention scores recorded through transformers' attention interface, checked against eager BERT."""

import copy

import pytest
import torch
from transformers import BertConfig, BertModel

from bertdistill.attention import ATTENTION_SCORES, record_attention_scores


def models():
    torch.manual_seed(0)
    config = BertConfig(vocab_size=60, hidden_size=24, num_hidden_layers=3, num_attention_heads=3,
                        intermediate_size=48, attn_implementation="eager")  # fmt: skip
    eager = BertModel(config).eval()
    recording = BertModel(copy.deepcopy(config)).eval()  # set_attn_implementation changes the config it is given
    recording.load_state_dict(eager.state_dict())
    return eager, recording


def batch(padded=True):
    torch.manual_seed(1)
    ids = torch.randint(5, 60, (2, 7))
    mask = torch.ones(2, 7, dtype=torch.long)
    if padded:
        mask[1, 4:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def reference_scores(model, hidden, layer, mask):
    """Q K^T / sqrt(d) from layer `layer`'s input, zero where the key is padding (TinyBERT's convention)."""
    attention = model.encoder.layer[layer - 1].attention.self
    heads, size = attention.num_attention_heads, attention.attention_head_size
    b, n, _ = hidden.shape
    q = attention.query(hidden).view(b, n, heads, size).transpose(1, 2)
    k = attention.key(hidden).view(b, n, heads, size).transpose(1, 2)
    scores = q @ k.transpose(2, 3) / size**0.5
    return scores.masked_fill(mask[:, None, None, :] == 0, 0.0)


@pytest.mark.parametrize("padded", [True, False])
def test_recorded_scores_are_presoftmax_and_outputs_unchanged(padded):
    eager, recording = models()
    record_attention_scores(recording, [1, 3])
    inputs = batch(padded)
    with torch.no_grad():
        ref = eager(**inputs, output_attentions=True, output_hidden_states=True)
        got = recording(**inputs, output_attentions=True)
    assert recording.config._attn_implementation == ATTENTION_SCORES
    torch.testing.assert_close(got.last_hidden_state, ref.last_hidden_state, rtol=1e-5, atol=1e-5)
    assert len(got.attentions) == 2  # layers 1 and 3 only
    mask = inputs["attention_mask"]
    for recorded, layer in zip(got.attentions, (1, 3)):
        assert recorded.dtype == torch.float32
        expected = reference_scores(eager, ref.hidden_states[layer - 1], layer, mask)
        torch.testing.assert_close(recorded, expected, rtol=1e-5, atol=1e-5)
        # Softmax over the unmasked keys gives back eager's probabilities.
        probs = recorded.masked_fill(mask[:, None, None, :] == 0, float("-inf")).softmax(-1)
        torch.testing.assert_close(probs, ref.attentions[layer - 1], rtol=1e-5, atol=1e-6)


def test_scores_carry_gradients_and_bad_layers_are_refused():
    _, recording = models()
    record_attention_scores(recording)
    recording.train()
    out = recording(**batch(), output_attentions=True)
    assert len(out.attentions) == 3
    out.attentions[0].pow(2).mean().backward()
    assert recording.encoder.layer[0].attention.self.query.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"Attention layers \[4\] out of range: the model has layers 1..3"):
        record_attention_scores(recording, [4])


def test_scores_stay_fp32_under_bf16_autocast():
    eager, recording = models()
    record_attention_scores(recording, [1])
    inputs = batch()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        got = recording(**inputs, output_attentions=True).attentions[0]
        hidden = recording.embeddings(input_ids=inputs["input_ids"])
        attention = recording.encoder.layer[0].attention.self
        q, k = (f(hidden).view(2, 7, 3, 8).transpose(1, 2) for f in (attention.query, attention.key))
    assert q.dtype == torch.bfloat16 and got.dtype == torch.float32  # projections in bf16, the scores not
    expected = (q.float() @ k.float().transpose(2, 3) / 8**0.5).masked_fill(
        inputs["attention_mask"][:, None, None, :] == 0, 0.0
    )
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
