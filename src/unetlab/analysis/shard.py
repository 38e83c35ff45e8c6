"""Sharing an analysis' sampling chunks among the processes of `accelerate launch`.

Chunk k holds the same (conditioning, seed) items whichever process runs it, so the gathered results are the
single-process results: every process gets all of them, in chunk order."""

from __future__ import annotations

from collections.abc import Callable, Sequence


def map_chunks(fn: Callable, chunks: Sequence, accelerator=None) -> list:
    """`[fn(c) for c in chunks]`, each process computing its contiguous share of the chunks."""
    if accelerator is None or accelerator.num_processes == 1:
        return [fn(c) for c in chunks]
    from accelerate.utils import gather_object

    indices = list(range(len(chunks)))
    with accelerator.split_between_processes(indices) as mine:
        done = [(i, fn(chunks[i])) for i in mine]
    return [r for _, r in sorted(gather_object(done), key=lambda p: p[0])]


def chunk_size(batch_size: int | None, n_items: int, accelerator=None) -> int:
    """`batch_size`, or by default all items in one chunk (one chunk per process under `accelerate launch`)."""
    if batch_size is not None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: expected a positive int or None, got {batch_size!r}")
        return batch_size
    processes = 1 if accelerator is None else accelerator.num_processes
    return -(-n_items // processes)
