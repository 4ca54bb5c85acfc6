import pytest
import torch
from transformers import BertConfig

from bertdistill import build_student, default_student_layers

from conftest import make_teacher, tiny_config


@pytest.mark.parametrize(
    "teacher_layers, student_layers, expected",
    [(6, 3, [1, 3, 5]), (12, 6, [1, 3, 5, 7, 9, 11]), (12, 4, [2, 5, 8, 11]), (4, 4, [0, 1, 2, 3]), (6, 1, [5])],
)
def test_default_layers_are_evenly_spread_and_keep_the_top(teacher_layers, student_layers, expected):
    assert default_student_layers(teacher_layers, student_layers) == expected


def test_student_copies_embeddings_chosen_layers_pooler_and_head(tokenizer):
    teacher = make_teacher(tokenizer, layers=4)
    student = build_student(teacher, layers="0,3")
    assert student.config.num_hidden_layers == 2 and teacher.config.num_hidden_layers == 4
    t, s = teacher.state_dict(), student.state_dict()
    for key, value in s.items():
        source = key.replace("encoder.layer.0.", "encoder.layer.0.").replace("encoder.layer.1.", "encoder.layer.3.")
        assert torch.equal(value, t[source]), key
    assert student.config.id2label == teacher.config.id2label
    # Copies, not shared storage: training the student leaves the teacher alone.
    assert (
        s["bert.embeddings.word_embeddings.weight"].data_ptr()
        != t["bert.embeddings.word_embeddings.weight"].data_ptr()
    )


def test_layer_errors_name_the_problem(tokenizer):
    teacher = make_teacher(tokenizer, layers=4)
    with pytest.raises(ValueError, match=r"out of range: the teacher has 4 layers, numbered 0..3"):
        build_student(teacher, layers="1,4")
    with pytest.raises(ValueError, match="student_num_layers=5 is out of range"):
        build_student(teacher, num_layers=5)
    with pytest.raises(ValueError, match="strictly increasing"):
        build_student(teacher, layers="2,1")
    with pytest.raises(ValueError, match="comma-separated integers"):
        build_student(teacher, layers="one,two")
    with pytest.raises(ValueError, match="exactly one of"):
        build_student(teacher, num_layers=2, layers="0,1")
    with pytest.raises(ValueError, match="exactly one of"):
        build_student(teacher)


def test_student_from_config_shares_vocab_and_takes_the_teacher_labels(tokenizer, tmp_path):
    teacher = make_teacher(tokenizer, layers=4)
    config = tiny_config(len(tokenizer), layers=2)
    config.hidden_size, config.intermediate_size = 16, 32
    config.save_pretrained(tmp_path)
    student = build_student(teacher, config=str(tmp_path / "config.json"))
    assert student.config.hidden_size == 16 and student.config.num_labels == 2

    bad = BertConfig(vocab_size=len(tokenizer) + 7, hidden_size=16, num_hidden_layers=1, num_attention_heads=2)
    with pytest.raises(ValueError, match="vocabularies differ"):
        build_student(teacher, config=bad)
    with pytest.raises(FileNotFoundError, match="student_config not found"):
        build_student(teacher, config=str(tmp_path / "missing.json"))


def test_layer_selections_and_their_init(tokenizer):
    from bertdistill import select_teacher_layers

    assert select_teacher_layers(12, 6, "first") == [0, 1, 2, 3, 4, 5]
    assert select_teacher_layers(12, 6, "alternate") == [0, 2, 4, 6, 8, 10]
    assert select_teacher_layers(6, 3, "alternate") == [0, 2, 4]
    with pytest.raises(ValueError, match="need at least 7 teacher layers"):
        select_teacher_layers(6, 4, "alternate")
    with pytest.raises(ValueError, match="Unknown layer selection 'random'"):
        select_teacher_layers(6, 3, "random")

    teacher = make_teacher(tokenizer, layers=4)
    for selection, chosen in (("first", [0, 1]), ("alternate", [0, 2])):
        student = build_student(teacher, num_layers=2, selection=selection)
        t = teacher.state_dict()
        for key, value in student.state_dict().items():
            for i, source in enumerate(chosen):
                key_t = key.replace(f"encoder.layer.{i}.", f"encoder.layer.{source}.")
                if f"encoder.layer.{i}." in key:
                    break
            else:
                key_t = key
            assert torch.equal(value, t[key_t]), (selection, key)
