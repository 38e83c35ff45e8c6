"""Which attention processors treat the elements of a batch independently, so that decoding several steps as
one batch (encoder propagation's parallel mode) equals decoding them one by one, up to floating-point noise."""

from __future__ import annotations

from .side_state import holders

# diffusers processors that compute every batch element on its own (the batch is only a leading dimension).
BATCH_INDEPENDENT = frozenset({
    "AttnProcessor", "AttnProcessor2_0", "XFormersAttnProcessor", "SlicedAttnProcessor", "FusedAttnProcessor2_0",
    "AttnAddedKVProcessor", "AttnAddedKVProcessor2_0", "SlicedAttnAddedKVProcessor", "XFormersAttnAddedKVProcessor",
    "AttnProcessorNPU", "CrossAttnStoreProcessor", "IPAdapterAttnProcessor", "IPAdapterAttnProcessor2_0",
})


def batch_mixing_processor(modules) -> str | None:
    """'<Processor> (in <module path>)' for the first processor in `modules` not known to be batch-independent."""
    for m in holders(modules):
        name = type(m.processor).__name__
        if name not in BATCH_INDEPENDENT:
            return f"{name} (in {type(m).__name__})"
    return None
