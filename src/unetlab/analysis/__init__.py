"""Temporal dynamics of the UNet: trace parts across steps, ablate components in step windows, perturb
resolution levels, and derive schedules (key steps, block-skip plans, DeepCache settings) from the results."""

from . import plots
from .ablate import AblationGrid, ablate, ablated_sample, ablation, components_of, make_windows
from .derive import derive_block_skip_plan, derive_key_steps, encoder_change, recommend_deepcache
from .perturb import Sensitivity, perturb, perturbation, resolution_levels
from .sampling import Sampler
from .trace import TraceResult, decoder_encoder_ratio, mean_change, trace
from .verify import fit_plan, measure_plan

__all__ = [
    "AblationGrid",
    "Sampler",
    "Sensitivity",
    "TraceResult",
    "ablate",
    "ablated_sample",
    "ablation",
    "components_of",
    "decoder_encoder_ratio",
    "derive_block_skip_plan",
    "derive_key_steps",
    "encoder_change",
    "fit_plan",
    "make_windows",
    "mean_change",
    "measure_plan",
    "perturb",
    "perturbation",
    "plots",
    "recommend_deepcache",
    "resolution_levels",
    "trace",
]
