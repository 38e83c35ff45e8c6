"""The bench's tuned rows: the model's presets on the bench's seeds, refused (with the reason) when no preset fits,
when the bench runs another baseline solver or step count, or when its seeds are among those the tuner saw."""

from unetlab.eval.bench_tuned import placeholders, resolve
from unetlab.eval.bench_workload import Workload, shipped_workload
from unetlab.recipes.presets import preset
from unetlab.recipes.solver import resolve as resolve_solver
from unetlab.testing import tiny_sd_pipeline


def _rows(w, steps=50, seeds=range(12), solver="ddim"):
    rows = placeholders(steps)
    for m in rows:
        resolve(m, w, steps, seeds, resolve_solver(solver, w.pipe))
    return rows


def test_shipped_presets_run_on_held_out_seeds_only():
    w = shipped_workload("shapes")
    for m, name in zip(_rows(w), ("fast", "balanced")):
        recipe = preset(f"shapes:{name}")
        assert m.unsupported is None and m.apply is not None and m.steps == recipe.num_inference_steps
        assert recipe.tuned_on["budget"] in m.name
        handles = m.apply(w.pipe)
        assert [h.recipe for h in handles] == [recipe]
        for h in handles:
            h.remove()
    seen = preset("shapes:fast").tuned_on["validation_seeds"][0]
    assert all(
        "among the seeds the preset was tuned on" in m.unsupported for m in _rows(w, seeds=range(seen, seen + 4))
    )
    assert all("tuned against a 50-step baseline, the bench runs 20" in m.unsupported for m in _rows(w, steps=20))
    assert all("tuned against a DDIM baseline, the bench runs DPM++" in m.unsupported for m in _rows(w, solver="dpm++"))


def test_no_preset_for_an_unknown_unet():
    w = Workload("tiny", tiny_sd_pipeline(), None, None)
    assert all(m.unsupported.startswith("no shipped preset fits") for m in _rows(w))
