"""The result store of the real-data checks and the seed-paired comparison with a baseline."""

import pytest

from bertdistill.results import ResultStore, summarise


def test_store_saves_loads_and_never_overwrites(tmp_path):
    store = ResultStore(tmp_path)
    assert not store.has("rte", "pkd", 42)
    store.save("rte", "pkd", 42, {"score": 0.6})
    store.save("rte", "pkd", "43", {"score": 0.5})
    store.save("rte", "finetune-first", 42, {"score": 0.55})
    assert store.has("rte", "pkd", "42")
    with pytest.raises(FileExistsError, match="finished result"):
        store.save("rte", "pkd", "42", {"score": 0.9})
    loaded = store.load("rte")
    assert loaded["pkd"]["42"]["score"] == 0.6 and loaded["pkd"]["43"]["score"] == 0.5
    assert loaded["finetune-first"]["42"] == {"task": "rte", "run": "finetune-first", "seed": "42", "score": 0.55}
    assert store.load("cola") == {}
    store.save("cola", "teacher", 42, {"score": 0.2})
    (tmp_path / "mrpc").mkdir()  # a folder without results (latency only, say) is no task with results
    (tmp_path / "mrpc" / "latency.json").write_text("{}")
    assert store.tasks() == ["cola", "rte"]


def test_summarise_compares_over_common_seeds_only():
    scores = {
        "baseline": {"42": 0.50, "43": 0.60},
        "method": {"44": 0.90, "42": 0.52, "43": 0.56},  # seed 44 has no baseline run: left out of the verdict
        "alone": {"42": 0.7},
    }
    summaries = summarise(scores, {"method": "baseline", "alone": "missing"})
    method = summaries["method"]
    assert method.seeds == ["42", "43", "44"] and method.scores == [0.52, 0.56, 0.90]
    assert method.mean == pytest.approx(0.66) and method.std == pytest.approx(0.2088061), "sample std over 3 seeds"
    assert method.paired_seeds == ["42", "43"]
    assert method.paired_score == pytest.approx(0.54) and method.paired_baseline_score == pytest.approx(0.55)
    assert method.beats_baseline is False, "0.54 < 0.55 over the common seeds, although the mean of all is higher"
    assert summaries["baseline"].beats_baseline is None and summaries["baseline"].std == pytest.approx(0.0707107)
    assert summaries["alone"].beats_baseline is None and summaries["alone"].std is None


def test_summarise_verdict_is_strict():
    summaries = summarise({"b": {"1": 0.5}, "m": {"1": 0.5}}, {"m": "b"})
    assert summaries["m"].beats_baseline is False
    summaries = summarise({"b": {"1": 0.5}, "m": {"1": 0.5001}}, {"m": "b"})
    assert summaries["m"].beats_baseline is True
