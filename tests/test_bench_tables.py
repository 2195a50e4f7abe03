"""The detection benchmark's tables: merging runs, the mean over training seeds and
issue #14's target checks (pure Python; no TensorFlow)."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import bench_detection as bd  # noqa: E402


def _r(img, pix, aupro, defects=None):
    return {
        "image_auroc": img,
        "pixel_auroc": pix,
        "aupro": aupro,
        "per_defect": defects or {},
    }


def _run(seed, results, data_seed=0):
    return {"args": {"seed": seed, "data_seed": data_seed}, "results": results}


def test_merge_runs_joins_categories_of_one_seed_and_keeps_seeds_apart():
    a = _run(0, {"mesh": {"models": {"aesc": _r(0.7, 0.9, 0.8)}, "baselines": {}}})
    b = _run(0, {"wood": {"models": {"aesc": _r(1.0, 0.99, 0.98)}, "baselines": {}}})
    c = _run(1, {"mesh": {"models": {"aesc": _r(0.8, 0.95, 0.9)}, "baselines": {}}})
    by_seed = bd.merge_runs([c, a, b])
    assert list(by_seed) == [0, 1]
    assert sorted(by_seed[0]) == ["mesh", "wood"]
    assert by_seed[1]["mesh"]["models"]["aesc"]["image_auroc"] == 0.8


def test_merge_runs_refuses_a_result_given_twice_and_mixed_data_seeds():
    a = _run(0, {"mesh": {"models": {"aesc": _r(0.7, 0.9, 0.8)}, "baselines": {}}})
    with pytest.raises(ValueError, match="mesh/aesc of training seed 0 is in two files"):
        bd.merge_runs([a, a], ["x.json", "y.json"])
    d = _run(1, {"mesh": {"models": {"aesc": _r(0.7, 0.9, 0.8)}, "baselines": {}}}, data_seed=1)
    with pytest.raises(ValueError, match="different data seeds"):
        bd.merge_runs([a, d])


def test_mean_over_seeds_matches_numpy_and_counts_seeds():
    rng = np.random.default_rng(0)
    vals = rng.uniform(0.5, 1.0, size=(2, 3))
    defects = [{"scratch": _r(*v[::-1])} for v in vals]
    by_seed = {
        s: {
            "mesh": {
                "models": {"aesc": _r(*vals[s], defects[s])},
                "baselines": {"patch_nn": _r(0.8, 0.9, 0.7)},
            }
        }
        for s in (0, 1)
    }
    by_seed[1]["wood"] = {"models": {"aesc": _r(1.0, 0.99, None)}, "baselines": {}}
    mean = bd.mean_over_seeds(by_seed)
    got = [mean["mesh"]["aesc"][k] for k in bd.METRICS]
    np.testing.assert_allclose(got, vals.mean(axis=0))
    np.testing.assert_allclose(
        [mean["mesh"]["aesc"]["per_defect"]["scratch"][k] for k in bd.METRICS],
        vals[:, ::-1].mean(axis=0),
    )
    assert mean["mesh"]["aesc"]["n"] == 2 and mean["wood"]["aesc"]["n"] == 1
    assert mean["wood"]["aesc"]["aupro"] is None
    assert mean["mesh"]["aesc"]["runs"][1]["image_auroc"] == vals[1, 0]


def test_targets_level_and_ahead_use_the_stated_margin():
    def mean_of(aesc, patch, cat="wood"):
        return bd.mean_over_seeds(
            {0: {cat: {"models": {"aesc": _r(*aesc)}, "baselines": {"patch_nn": _r(*patch)}}}}
        )

    checks, ahead = bd.targets(mean_of((0.995, 0.985, 0.975), (1.0, 0.99, 0.98)))
    assert checks["wood"] == {
        "image AUROC >= 0.95": True,
        "level with patch_nn": True,  # 0.005 behind on each metric: level
        "ahead of patch_nn": False,
    }
    assert ahead == 0
    checks, ahead = bd.targets(mean_of((0.97, 0.99, 0.97), (0.93, 0.97, 0.93), cat="nut"))
    assert checks["nut"]["ahead of patch_nn"] and ahead == 1
    checks, _ = bd.targets(mean_of((0.99, 0.99, 0.90), (0.93, 0.97, 0.93), cat="nut"))
    assert not checks["nut"]["level with patch_nn"]  # 0.03 behind on AUPRO
    checks, _ = bd.targets(mean_of((0.86, 0.89, 0.5), (0.5, 0.5, 0.4), cat="gravel"))
    assert checks["gravel"]["image AUROC >= 0.85"] and not checks["gravel"]["pixel AUROC >= 0.9"]


def test_print_curves_lists_each_map_and_the_kept_weights(capsys):
    maps = {"learned": _r(0.61, 0.62, 0.63), "residual": _r(0.71, 0.72, 0.73)}
    kept = {"learned": _r(0.81, 0.82, 0.83)}
    point = {**_r(0.61, 0.62, 0.63), "minutes": 4, "steps": 100, "maps": maps}
    point["kept"] = {**_r(0.81, 0.82, 0.83), "maps": kept}
    final = {**_r(0.91, 0.92, 0.93), "minutes": 16, "steps": 400, "maps": {}, "final": True}
    model = {**_r(0.91, 0.92, 0.93), "curve": [point, final]}
    bd._print_curves({"gravel": {"models": {"aesc_head": model}, "baselines": {}}})
    lines = capsys.readouterr().out.splitlines()
    assert any("4 min" in line and "100 steps" in line and "0.610" in line for line in lines)
    assert any("16 min" in line and "400 steps" in line and "0.910" in line for line in lines)
    assert any("map residual" in line and "0.710 / 0.720 / 0.730" in line for line in lines)
    kept_lines = [line for line in lines if "kept map learned" in line]
    assert len(kept_lines) == 1 and "0.810 / 0.820 / 0.830" in kept_lines[0]
