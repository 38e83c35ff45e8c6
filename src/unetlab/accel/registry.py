"""The accelerator registry: every accelerator's config class by kind, in the stacking table's order, and the
loader of a saved config of any kind. It sits above the accelerator modules, which import `config` only."""

from __future__ import annotations

from .anchor_attention import AnchorAttentionConfig
from .block_skip import BlockSkipConfig
from .branch_cache import BranchCacheConfig
from .clockwork import ClockworkConfig
from .config import AccelConfig, in_file
from .encoder_propagation import EncoderPropagationConfig
from .guidance_reuse import GuidanceReuseConfig
from .peers import DeepCacheConfig, PABConfig, TaylorSeerConfig, TGateConfig, ToMeConfig
from .stacking import ACCELERATORS

_CONFIGS: tuple[type[AccelConfig], ...] = (
    EncoderPropagationConfig,
    BranchCacheConfig,
    ClockworkConfig,
    BlockSkipConfig,
    DeepCacheConfig,
    ToMeConfig,
    AnchorAttentionConfig,
    GuidanceReuseConfig,
    TGateConfig,
    PABConfig,
    TaylorSeerConfig,
)


def kinds() -> dict[str, type[AccelConfig]]:
    """Every accelerator's config class by kind, in the stacking table's order (the registry)."""
    by_kind = {cls.kind: cls for cls in _CONFIGS}
    if set(by_kind) != set(ACCELERATORS):
        raise RuntimeError(
            f"accel: the registry {sorted(by_kind)} and the stacking table {sorted(ACCELERATORS)} differ"
        )
    return {k: by_kind[k] for k in ACCELERATORS}


def load_config(source) -> AccelConfig:
    """The config saved in a JSON file (or given as its dict), of the kind it names."""
    if not isinstance(source, dict):
        return in_file(load_config, source, "config")
    d = source
    kind = str(d.get("kind", "")).removeprefix("unetlab.") if isinstance(d, dict) else ""
    known = kinds()
    if kind not in known:
        raise ValueError(
            f"config: kind {d.get('kind') if isinstance(d, dict) else None!r} is not an accelerator; "
            f"valid: {', '.join('unetlab.' + k for k in sorted(known))}"
        )
    return known[kind].from_dict(d)
