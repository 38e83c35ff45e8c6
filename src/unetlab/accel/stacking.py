"""Which accelerators compose on one UNet, and in which order; everything else is refused when applied.

| applied first          | then                          | why it composes                                             |
|------------------------|-------------------------------|-------------------------------------------------------------|
| `encoder_propagation`  | `branch_cache` or `clockwork` | the reuse patch wraps encoder propagation's forward; at a   |
|                        |                               | non-key step the decoder's deep up blocks are reused as     |
|                        |                               | well; decoding is sequential while stacked (deep features   |
|                        |                               | belong to one step)                                         |
| `branch_cache` or      | `anchor_attention`            | anchor attention replaces self-attention processors only;   |
| `clockwork`            |                               | the reuse patch decides which blocks run                    |
| `encoder_propagation`  | `tome`                        | tomesd merges tokens inside the transformer blocks that the |
|                        |                               | split forward runs (Faster Diffusion's SD + ToMe row)       |
| `branch_cache` or      | `guidance_reuse`              | guidance reuse decides which guidance rows run; a full step |
| `clockwork` (identity  |                               | (its own or the cache's) is one call on the whole batch, a  |
| adaptor)               |                               | cheap one the conditional rows offered as a row view, which |
|                        |                               | get those rows of the stored deep features                  |
| `encoder_propagation`  | `guidance_reuse`              | at a full step each guidance chunk is a call (slot) of its  |
| or learned `clockwork` |                               | own under it, the conditional first, so the caches hold one |
|                        |                               | chunk's rows and a cheap step reuses the conditional slot's |
|                        |                               | cache                                                       |

Refused, with the reason:
- `branch_cache` + `clockwork`: both replace the same deep path;
- `block_skip` with any other: both decide which blocks run at a step, and a skipped block's cache would be
  fed to the other's batch (encoder propagation decodes several steps as one batch);
- `branch_cache`/`clockwork` before `encoder_propagation`: the reuse patch would never run under it;
- the peers (`deepcache`, `tome`, `tgate`, diffusers' `pab` and `taylorseer` hooks) with any other (but `tome`
  after `encoder_propagation`): each replaces forwards the others patch;
- `anchor_attention` with `encoder_propagation` (its parallel decoder's batch rows are not frames) or
  `block_skip`, and anything applied after `anchor_attention`;
- `guidance_reuse` with anything but the three above, and anything applied after it: it offers row views or splits
  the guidance batch into calls only for the reuse accelerators that keep their caches per call slot (and only
  without PAG, whose processors split the batch themselves).
"""

from __future__ import annotations

from ..errors import StackingError
from ..patching import claims

# Every accelerator (its config's `kind`) and the module of `unetlab.accel` defining it: the registry's one list.
ACCELERATORS = {
    "encoder_propagation": "encoder_propagation",
    "branch_cache": "branch_cache",
    "clockwork": "clockwork",
    "block_skip": "block_skip",
    "deepcache": "peers",
    "tome": "peers",
    "anchor_attention": "anchor_attention",
    "guidance_reuse": "guidance_reuse",
    "tgate": "peers",
    "pab": "peers",
    "taylorseer": "peers",
}
COMPOSE = frozenset(
    {
        ("encoder_propagation", "branch_cache"),
        ("encoder_propagation", "clockwork"),
        ("branch_cache", "anchor_attention"),
        ("clockwork", "anchor_attention"),
        ("encoder_propagation", "tome"),
        ("encoder_propagation", "guidance_reuse"),
        ("branch_cache", "guidance_reuse"),
        ("clockwork", "guidance_reuse"),
    }
)
# Applied after encoder_propagation, these make its decoding sequential (their deep features belong to one step).
SEQUENTIAL = frozenset({"branch_cache", "clockwork"})
_REASONS = {
    frozenset({"branch_cache", "clockwork"}): "both replace its deep path",
    frozenset({"block_skip", "anchor_attention"}): "both decide which blocks run at a step",
    "block_skip": "both decide which blocks run at a step",
    "deepcache": "DeepCache replaces the UNet's forward",
    "tome": "tomesd replaces the transformer blocks' forward",
    "tgate": "T-GATE replaces the pipeline's call and every attention forward",
    "pab": "diffusers' Pyramid Attention Broadcast hooks replace the attention forwards",
    "taylorseer": "diffusers' TaylorSeer hooks replace the attention and feed-forward forwards",
    "anchor_attention": "anchor attention needs every UNet batch row to be a frame",
    "guidance_reuse": "guidance reuse stacks only after encoder_propagation, branch_cache or clockwork",
}


def _reason(a: str, b: str) -> str:
    pair = _REASONS.get(frozenset({a, b}))
    if pair:
        return pair
    for kind in (a, b):
        if kind in _REASONS:
            return _REASONS[kind]
    return "they patch the same modules"


def check(unet, kind: str) -> None:
    """Raise a one-line error when `kind` cannot be applied on top of what is already on `unet`."""
    for other in sorted(claims(unet) & set(ACCELERATORS) - {kind}):
        if (other, kind) in COMPOSE:
            continue
        if (kind, other) in COMPOSE:
            raise StackingError(
                f"{kind}: apply it before {other} (the only order in which they compose); remove "
                f"the {other} handle, apply {kind}, then {other}"
            )
        raise StackingError(
            f"{kind}: {other} is already applied to this UNet and they do not compose "
            f"({_reason(kind, other)}); call .remove() on the {other} handle first; composable: "
            + ", ".join(f"{a} then {b}" for a, b in sorted(COMPOSE))
        )
