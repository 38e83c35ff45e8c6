"""The bench's tuned rows: the model's presets on the bench's seeds, refused (with the reason) when no preset fits,
when the bench runs another baseline solver or step count, or when its seeds are among those the tuner saw."""

from unetlab.bench.rows import default_rows
from unetlab.bench.workload import shipped_workload
from unetlab.recipes.presets import preset
from unetlab.recipes.solver import resolve as resolve_solver
from unetlab.testing import tiny_sd_pipeline


def _rows(unet, pipe, steps=50, seeds=range(12), solver="ddim", guidance_scale=5.0):
    rows = default_rows(unet, steps, resolve_solver(solver, pipe), True, guidance_scale=guidance_scale, seeds=seeds)
    return [r for r in rows if r.family == "tuned"]


def test_shipped_presets_run_on_held_out_seeds_only():
    w = shipped_workload("shapes")
    for r, name in zip(_rows(w.unet, w.pipe), ("fast", "balanced")):
        recipe = preset(f"shapes:{name}")
        assert r.unsupported is None and r.recipe == recipe and r.recipe.to_dict() == recipe.to_dict()
        assert recipe.tuned_on["budget"] in r.name
    seen = preset("shapes:fast").tuned_on["validation_seeds"][0]
    assert all(
        "among the seeds the preset was tuned on" in r.unsupported
        for r in _rows(w.unet, w.pipe, seeds=range(seen, seen + 4))
    )
    assert all(
        "tuned against a 50-step baseline, the bench runs 20" in r.unsupported for r in _rows(w.unet, w.pipe, 20)
    )
    assert all(
        "tuned against a DDIM baseline, the bench runs DPM++" in r.unsupported
        for r in _rows(w.unet, w.pipe, solver="dpm++")
    )
    assert all(
        "tuned at guidance 5.0, the bench samples at 7.0" in r.unsupported
        for r in _rows(w.unet, w.pipe, guidance_scale=7.0)
    )


def test_no_preset_for_an_unknown_unet():
    pipe = tiny_sd_pipeline()
    rows = _rows(pipe.unet, pipe)
    assert [r.name for r in rows] == ["tuned: fast", "tuned: balanced"]
    assert all(r.recipe is None and r.unsupported.startswith("no shipped preset fits") for r in rows)
