"""What the compat tests check: every accelerator on every tiny pipeline, the refusals (with their reasons), and
the README table generated from both (`python -m tests.compat.matrix` rewrites it; a test checks it is current)."""

from __future__ import annotations

import re
from pathlib import Path

from unetlab.accel import (
    BlockSkipConfig,
    BranchCacheConfig,
    ClockworkConfig,
    EncoderPropagationConfig,
    SkipWindow,
)

from .pipelines import NAMES

# accelerator -> (identity config: must equal the plain pipeline, active config: must equal the reference)
ACCELERATORS = {
    "encoder_propagation": (
        EncoderPropagationConfig(key_steps="all", noise_injection=None),
        EncoderPropagationConfig(key_steps="uniform:2", parallel=False, noise_injection=None),
    ),
    "branch_cache": (BranchCacheConfig(interval=1), BranchCacheConfig(interval=2, branch=0)),
    "clockwork": (ClockworkConfig(clock=1), ClockworkConfig(clock=3, level=1)),
    "block_skip": (BlockSkipConfig([]), BlockSkipConfig([SkipWindow("up_blocks.0", 1, 3)])),
}

# (accelerator, pipeline) -> the start of the one-line error raised when applying, and why (README).
REFUSED: dict[tuple[str, str], tuple[str, str]] = {}

# Pipelines whose row in the README gets a note.
NOTES = {
    "pag": "PAG on the mid and up blocks; parallel decoding lays the copies out group by group for its `chunk(3)`",
    "pag_no_cfg": "PAG without CFG (`chunk(2)`)",
    "panorama": "two views per step: state kept per view (call slot)",
    "sag": "two UNet calls per step (batch 2, then 1): state kept per call slot; SAG's stored attention map is "
    "restored with the reused features",
    "sd_img2img": "steps and key steps count over the steps run (strength 0.7)",
    "sd_img2img_dpm": "DPM-Solver++ (multistep, `set_begin_index`)",
    "sdxl_inpaint": "default strength 0.9999",
    "sdxl_refiner": "`denoising_start=0.6`: the first step run is full",
    "sdxl_base_denoising_end": "`denoising_end=0.6`",
    "text2video": "`UNet3DConditionModel`: frames folded into the batch (split forward in `unet/split_video.py`)",
    "animatediff": "`UNetMotionModel`: frames folded into the batch (split forward in `unet/split_video.py`)",
    "animatediff_ip_adapter": "`UNetMotionModel` with an IP-Adapter (`added_cond_kwargs['image_embeds']`)",
    "animatediff_sdxl": "`AnimateDiffSDXLPipeline`: `UNetMotionModel` with SDXL's `text_time` `added_cond_kwargs`",
    "ip_adapter": "image projection + IP attention processors built in-process; `ip_adapter_image_embeds`",
    "upscale_latent": "K-diffusion blocks, no mid block, Fourier time embedding (Euler)",
    "upscale_x4": "noise level as class labels",
    "sd_compiled": "`pipe.unet = torch.compile(pipe.unet)` (checked with backend `eager`; `fullgraph=True` works): the "
    "handles patch `_orig_mod` and decide in Python outside the graphs, the UNet (or its encoder and "
    "decoder) runs compiled; `.remove()` drops the graphs traced with the patches",
    "t2i_adapter": "the adapter's residuals enter the encoder only (encoder propagation encodes them at key steps)",
}

BEGIN, END = "<!-- compat-table:begin -->", "<!-- compat-table:end -->"
README = Path(__file__).resolve().parents[2] / "README.md"


def table() -> str:
    """The Markdown table of pipelines x accelerators (yes: identity == plain, active == reference, removal
    restores; no: refused at apply time, reason below)."""
    accels = list(ACCELERATORS)
    lines = [
        "| pipeline (tiny, `tests/compat/pipelines.py`) | " + " | ".join(f"`{a}`" for a in accels) + " | note |",
        "|---|" + "---|" * len(accels) + "---|",
    ]
    reasons = []
    for name in NAMES:
        cells = []
        for a in accels:
            if (a, name) in REFUSED:
                reasons.append(REFUSED[(a, name)][1])
                cells.append(f"refused ({len(reasons)})")
            else:
                cells.append("yes")
        lines.append(f"| `{name}` | " + " | ".join(cells) + f" | {NOTES.get(name, '')} |")
    lines.append("")
    lines += [f"({i}) {r}" for i, r in enumerate(reasons, start=1)]
    return "\n".join(lines)


def section() -> str:
    return f"{BEGIN}\n{table()}\n{END}"


def current_readme_section() -> str | None:
    text = README.read_text()
    m = re.search(re.escape(BEGIN) + ".*?" + re.escape(END), text, re.S)
    return m.group(0) if m else None


def write_readme() -> None:
    text = README.read_text()
    old = current_readme_section()
    if old is None:
        raise SystemExit(f"README.md: no {BEGIN} ... {END} block to replace")
    README.write_text(text.replace(old, section()))


if __name__ == "__main__":
    write_readme()
