"""Shared fixtures: a tiny WordPiece tokenizer and tiny BERT teachers built from `BertConfig` (no Hub access)."""

from __future__ import annotations

import os
import string
import sys
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

REPO = Path(__file__).resolve().parents[1]

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = ["the", "a", "is", "not", "and", "of", "to", "in", "it", "was", "good", "bad", "movie", "film"]


def find_glue_dir() -> Path | None:
    for candidate in (os.environ.get("GLUE_DIR"), REPO.parent / "shared" / "glue_data", "/work/shared/glue_data"):
        if candidate and (Path(candidate) / "SOURCES.md").is_file():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def glue_dir() -> Path:
    found = find_glue_dir()
    if found is None:
        pytest.skip("real GLUE data not found: set GLUE_DIR or place it at ../shared/glue_data")
    return found


def tiny_tokenizer(folder: Path) -> BertTokenizerFast:
    """A character-level WordPiece vocabulary written to `folder/vocab.txt`: every English text tokenizes, ids stay
    below 200 (also used by scripts/checks/int8_saturation.py)."""
    chars = string.ascii_lowercase + string.digits + string.punctuation
    vocab = list(dict.fromkeys(SPECIAL + WORDS + list(chars) + [f"##{c}" for c in chars]))  # "a" is a word and a char
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    return BertTokenizerFast(vocab=str(folder / "vocab.txt"), do_lower_case=True)


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tokenizer")
    tiny_tokenizer(path).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tokenizer(tokenizer_dir):
    return BertTokenizerFast.from_pretrained(tokenizer_dir)


class ForwardCounter:
    """Counts a model's forwards (a forward hook)."""

    def __init__(self, model):
        self.calls = 0
        model.register_forward_hook(self.hook)

    def hook(self, module, args, output):
        self.calls += 1


def tiny_config(vocab_size: int, num_labels: int = 2, layers: int = 4, dropout: float = 0.1, **kwargs) -> BertConfig:
    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
        num_labels=num_labels,
        **kwargs,
    )


def make_teacher(tokenizer, num_labels: int = 2, layers: int = 4, dropout: float = 0.1, seed: int = 0):
    torch.manual_seed(seed)
    config = tiny_config(len(tokenizer), num_labels=num_labels, layers=layers, dropout=dropout)
    if num_labels == 1:
        config.problem_type = "regression"
    return BertForSequenceClassification(config)


def save_with_tokenizer(model, tokenizer, path: Path) -> Path:
    """Save `model` and `tokenizer` into `path`, a folder `from_pretrained` loads; returns `path`."""
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def teacher_dir(tmp_path_factory, tokenizer):
    """A saved tiny 4-layer 2-label teacher with tokenizer (stands in for a fine-tuned RTE teacher)."""
    return save_with_tokenizer(make_teacher(tokenizer), tokenizer, tmp_path_factory.mktemp("teacher"))


def load_script(name: str):
    """Import `scripts/<name>.py` as a module (scripts/ is not a package); `name` may name a sub-folder, as in
    `checks/run_glue_suite`."""
    import importlib.util

    module_name = "script_" + name.replace("/", "_")
    spec = importlib.util.spec_from_file_location(module_name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the script is executing
    spec.loader.exec_module(module)
    return module


TEARDOWN_ABORT = "terminate called without an active exception"


def accelerate_launch(*args, cwd, timeout: int = 900):
    """Run `accelerate launch <args>` (launcher flags first, then the script and its flags); fail with its output."""
    import subprocess

    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    fixed = "--num_machines 1 --mixed_precision no --dynamo_backend no".split()
    command = [sys.executable, "-m", "accelerate.commands.launch", *fixed, *map(str, args)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)
    if result.returncode != 0 and TEARDOWN_ABORT in result.stderr:
        # torch's C++ teardown can still abort a rank at interpreter exit, after its work (rare: seen in one
        # fresh-clone CI run, 2026-12-07, despite run_script's barrier and destroy_process_group): run again
        # once; a real failure repeats
        result = subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result
