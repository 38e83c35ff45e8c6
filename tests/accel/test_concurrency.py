"""Two threads calling one accelerated pipeline: every call either equals the sequential call bit for bit or is
refused in one line, never mixed; the plain pipeline stays exact under the same threads."""

import threading

import pytest
import torch

import unetlab
from unetlab.recipes import Recipe
from unetlab.testing import tiny_sd_pipeline

STEPS = 6
SEEDS = (1, 2)
REFUSED = "a second pipeline call entered this accelerated UNet from another thread while a call is running"
APPLY = {
    "branch_cache": lambda pipe: unetlab.branch_cache(pipe, interval=2),
    "encoder_propagation": lambda pipe: unetlab.encoder_propagation(
        pipe, key_steps="uniform:2", parallel=True, noise_injection=None
    ),
    "recipe": lambda pipe: unetlab.accelerate(
        pipe,
        Recipe(
            STEPS,
            "DDIMScheduler",
            (
                unetlab.accel.EncoderPropagationConfig(key_steps="uniform:3", parallel=False, noise_injection=None),
                unetlab.accel.BranchCacheConfig(interval=2),
            ),
        ),
    ),
}
EMBEDS = torch.randn(2, 1, 5, 16, generator=torch.Generator().manual_seed(0))


def _call(pipe, seed, **more):
    return pipe(
        prompt_embeds=EMBEDS[0],
        negative_prompt_embeds=EMBEDS[1],
        guidance_scale=5.0,
        num_inference_steps=STEPS,
        height=64,
        width=64,
        output_type="latent",
        generator=torch.Generator().manual_seed(seed),
        **more,
    ).images


def _together(fns) -> list:
    """Run the callables in threads released together; their results or the RuntimeErrors they raised."""
    out, barrier = [None] * len(fns), threading.Barrier(len(fns))

    def work(i):
        barrier.wait()
        try:
            out[i] = fns[i]()
        except RuntimeError as err:
            out[i] = err

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def _check(results, expected) -> int:
    """Each result equals its sequential output or is the one-line refusal; returns how many ran."""
    ran = 0
    for result, want in zip(results, expected):
        if isinstance(result, RuntimeError):
            assert REFUSED in str(result) and "\n" not in str(result)
        else:
            assert torch.equal(result, want)
            ran += 1
    assert ran >= 1
    return ran


@pytest.mark.parametrize("kind", APPLY)
def test_concurrent_calls_are_exact_or_refused(kind):
    pipe = tiny_sd_pipeline()
    plain = [_call(pipe, s) for s in SEEDS]
    with APPLY[kind](pipe):
        expected = [_call(pipe, s) for s in SEEDS]
        assert not any(torch.equal(a, b) for a, b in zip(expected, plain))  # the accelerator is on
        for _ in range(3):
            _check(_together([lambda s=s: _call(pipe, s) for s in SEEDS]), expected)
        assert all(torch.equal(_call(pipe, s), e) for s, e in zip(SEEDS, expected))  # the handle still works
    assert all(torch.equal(_call(pipe, s), p) for s, p in zip(SEEDS, plain))


@pytest.mark.parametrize("kind", APPLY)
def test_a_call_entering_a_running_call_is_refused_and_the_running_call_stays_exact(kind):
    pipe = tiny_sd_pipeline()
    with APPLY[kind](pipe):
        expected = _call(pipe, 1)
        inside, done = threading.Event(), threading.Event()

        def pause(p, i, t, kwargs):  # the first thread waits inside its run until the second has tried
            if i == 2:
                inside.set()
                assert done.wait(60)
            return kwargs

        def second():
            assert inside.wait(60)
            try:
                return _call(pipe, 2)
            finally:
                done.set()

        first, refused = _together([lambda: _call(pipe, 1, callback_on_step_end=pause), second])
        assert torch.equal(first, expected)
        assert isinstance(refused, RuntimeError) and REFUSED in str(refused) and "\n" not in str(refused)
        assert torch.equal(_together([lambda: _call(pipe, 1)])[0], expected)  # another thread, once the run ended


def test_a_bare_unet_run_belongs_to_its_thread():
    pipe = tiny_sd_pipeline()
    unet, sample = pipe.unet, torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    h = unetlab.branch_cache(unet, interval=2)
    inside, done = threading.Event(), threading.Event()

    def loop():
        h.reset()
        outs = [unet(sample, 999 - 100 * k, EMBEDS[0].expand(2, -1, -1)).sample for k in range(2)]
        inside.set()
        assert done.wait(60)
        return outs + [unet(sample, 799, EMBEDS[0].expand(2, -1, -1)).sample]

    def other():
        assert inside.wait(60)
        try:
            return unet(sample, 999, EMBEDS[0].expand(2, -1, -1)).sample
        finally:
            done.set()

    done.set()
    expected = loop()  # alone: nothing to wait for
    done.clear()
    inside.clear()
    outs, refused = _together([loop, other])
    assert isinstance(refused, RuntimeError) and REFUSED in str(refused)
    assert all(torch.equal(a, b) for a, b in zip(outs, expected))
    h.remove()


def test_the_plain_pipeline_stays_exact_under_threads():
    pipe = tiny_sd_pipeline()
    expected = [_call(pipe, s) for s in SEEDS]
    unetlab.branch_cache(pipe, interval=2).remove()  # and after a handle came and went
    for _ in range(3):
        assert _check(_together([lambda s=s: _call(pipe, s) for s in SEEDS]), expected) == len(SEEDS)
