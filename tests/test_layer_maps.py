import json

import pytest

from bertdistill import LayerMatch, register_preset, resolve_layer_map


def pairs(matches):
    return [(m.student_layer, m.teacher_layer) for m in matches]


@pytest.mark.parametrize(
    "teacher, student, skip, last",
    [
        (12, 6, [(1, 2), (2, 4), (3, 6), (4, 8), (5, 10)], [(1, 7), (2, 8), (3, 9), (4, 10), (5, 11)]),
        (12, 3, [(1, 4), (2, 8)], [(1, 10), (2, 11)]),
        (6, 3, [(1, 2), (2, 4)], [(1, 4), (2, 5)]),
    ],
)
def test_pkd_presets_pick_the_papers_teacher_layers(teacher, student, skip, last):
    assert pairs(resolve_layer_map("pkd-skip", teacher, student)) == skip
    assert pairs(resolve_layer_map("pkd-last", teacher, student)) == last


def test_other_presets():
    assert pairs(resolve_layer_map("uniform", 6, 3)) == [(1, 2), (2, 4), (3, 6)]
    assert pairs(resolve_layer_map("one-of-two", 6, 3)) == [(1, 1), (2, 3), (3, 5)]
    assert pairs(resolve_layer_map("one-of-two", 12, 6)) == [(1, 1), (2, 3), (3, 5), (4, 7), (5, 9), (6, 11)]
    assert pairs(resolve_layer_map("last", 12, 4)) == [(4, 12)]
    with pytest.raises(ValueError, match="multiple of the student depth"):
        resolve_layer_map("uniform", 6, 4)


def test_custom_maps_from_string_json_and_file(tmp_path):
    assert pairs(resolve_layer_map("1:2, 2:5", 6, 3)) == [(1, 2), (2, 5)]
    spec = [{"teacher_layer": 0, "student_layer": 0, "weight": 0.5}, {"teacher_layer": 6, "student_layer": 3}]
    matches = resolve_layer_map(json.dumps(spec), 6, 3)
    assert matches[0] == LayerMatch(0, 0, weight=0.5) and pairs(matches) == [(0, 0), (3, 6)]
    path = tmp_path / "map.json"
    path.write_text(json.dumps(spec))
    assert resolve_layer_map(str(path), 6, 3) == matches


def test_map_errors_say_what_is_wrong():
    with pytest.raises(ValueError, match=r"student_layer 4 is out of range; the student has 3 layers.*0\.\.3"):
        resolve_layer_map("4:6", 6, 3)
    with pytest.raises(ValueError, match="teacher_layer 7 is out of range; the teacher has 6 layers"):
        resolve_layer_map("1:7", 6, 3)
    with pytest.raises(ValueError, match="use a preset .*pkd-skip"):
        resolve_layer_map("pkd-jump", 6, 3)
    with pytest.raises(ValueError, match="unknown: \\['layer'\\]"):
        resolve_layer_map('[{"layer": 1}]', 6, 3)
    with pytest.raises(ValueError, match="attention layers are numbered 1..6"):
        resolve_layer_map('[{"teacher_layer": 0, "student_layer": 0, "feature": "attention"}]', 6, 3)
    with pytest.raises(ValueError, match="feature must be one of"):
        resolve_layer_map('[{"teacher_layer": 1, "student_layer": 1, "feature": "logits"}]', 6, 3)
    with pytest.raises(ValueError, match="already registered"):
        register_preset("pkd-skip", lambda t, s: [])
