"""A `CLIPTokenizer` built from a closed vocabulary (no hub): byte-level BPE whose merges spell every word as one
token, so a grammar's captions tokenize to one id per word, as CLIP's own 49,408-token vocabulary would to a few."""

from __future__ import annotations

import itertools

from tokenizers.pre_tokenizers import ByteLevel
from transformers import CLIPTokenizer

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
SUFFIX = "</w>"


def _symbols(word: str) -> list[str]:
    return [*word[:-1], word[-1] + SUFFIX]


def _apply(symbols: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """CLIP's BPE: merge the adjacent pair of lowest rank, everywhere, until no ranked pair is left."""
    while len(symbols) > 1:
        pairs = [(ranks[p], p) for p in itertools.pairwise(symbols) if p in ranks]
        if not pairs:
            break
        first, second = min(pairs)[1]
        merged, i = [], 0
        while i < len(symbols):
            if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == (first, second):
                merged.append(first + second)
                i += 2
            else:
                merged.append(symbols[i])
                i += 1
        symbols = merged
    return symbols


def bpe_merges(words: list[str]) -> list[tuple[str, str]]:
    """Merges, in rank order, under which each of `words` (lower-case letters) is a single BPE token: for each
    word in turn, its leftmost remaining pair is appended until it is one symbol (an appended merge has the lowest
    rank, so it cannot split a word already whole)."""
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}
    for word in words:
        if not word.isalpha() or not word.islower():
            raise ValueError(f"words: {word!r} is not a lower-case word of letters")
        symbols = _apply(_symbols(word), ranks)
        while len(symbols) > 1:
            pair = (symbols[0], symbols[1])
            ranks[pair] = len(merges)
            merges.append(pair)
            symbols = _apply(symbols, ranks)
    return merges


def grammar_tokenizer(words: list[str], model_max_length: int) -> CLIPTokenizer:
    """A `CLIPTokenizer` (pad = end of text, as Stable Diffusion 1.x's) whose vocabulary is the 512 byte-level
    symbols of CLIP, the merges of `bpe_merges(words)` and the two special tokens."""
    alphabet = sorted(ByteLevel.alphabet())
    merges = bpe_merges(sorted(set(words)))
    tokens = alphabet + [a + SUFFIX for a in alphabet] + [a + b for a, b in merges] + [BOS, EOS]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(tokens))}
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)


def write_bpe_files(tokenizer: CLIPTokenizer, directory) -> None:
    """Also write CLIP's `vocab.json` and `merges.txt` (what the slow `CLIPTokenizer` of older transformers reads)."""
    import json
    from pathlib import Path

    model = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    merges = [" ".join(m) if isinstance(m, list) else m for m in model["merges"]]
    directory = Path(directory)
    (directory / "vocab.json").write_text(json.dumps(model["vocab"], ensure_ascii=False))
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
