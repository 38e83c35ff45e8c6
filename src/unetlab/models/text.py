"""A word-level tokenizer and a small Transformer text encoder, trained together with the shapes UNet."""

from __future__ import annotations

import torch
from diffusers import ModelMixin  # diffusers' pipeline loader also looks this name up in this module
from diffusers.configuration_utils import ConfigMixin, register_to_config
from torch import nn

PAD, BOS, UNK = "<pad>", "<bos>", "<unk>"
SPECIAL = (PAD, BOS, UNK)


def shapes_vocabulary() -> list[str]:
    """Every word of the shapes captions, after the special tokens."""
    from ..data.shapes import ATTRIBUTES

    words = {"a", "at", "the", "on", "background"}
    for values in ATTRIBUTES.values():
        for value in values:
            words.update(value.split())
    return list(SPECIAL) + sorted(words)


class WordTokenizer:
    """Lower-cased whitespace words -> ids: [<bos>, w1, ..., wn, <pad>, ...] of length `max_length`."""

    def __init__(self, vocab: list[str], max_length: int):
        if list(vocab[: len(SPECIAL)]) != list(SPECIAL):
            raise ValueError(f"vocab: must start with {SPECIAL}")
        self.vocab, self.max_length = list(vocab), max_length
        self.ids = {w: i for i, w in enumerate(self.vocab)}

    def __call__(self, prompts: list[str]) -> torch.Tensor:
        rows = []
        for prompt in prompts:
            words = prompt.lower().split()
            if len(words) + 1 > self.max_length:
                raise ValueError(f"prompt: {prompt!r} has {len(words)} words; at most {self.max_length - 1} fit")
            ids = [self.ids[BOS]] + [self.ids.get(w, self.ids[UNK]) for w in words]
            rows.append(ids + [self.ids[PAD]] * (self.max_length - len(ids)))
        return torch.tensor(rows, dtype=torch.long)

    def unknown_words(self, prompt: str) -> list[str]:
        return [w for w in prompt.lower().split() if w not in self.ids]


class TextEncoder(ModelMixin, ConfigMixin):
    """Token + position embeddings, a pre-norm Transformer encoder, final LayerNorm -> (B, L, hidden_size)."""

    @register_to_config
    def __init__(
        self,
        vocab: list[str] = (),
        max_length: int = 12,
        hidden_size: int = 64,
        num_layers: int = 2,
        num_heads: int = 4,
    ):
        super().__init__()
        self.token_embedding = nn.Embedding(len(vocab), hidden_size)
        self.position_embedding = nn.Parameter(torch.zeros(max_length, hidden_size))
        layer = nn.TransformerEncoderLayer(
            hidden_size, num_heads, 4 * hidden_size, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.final_norm = nn.LayerNorm(hidden_size)
        nn.init.normal_(self.position_embedding, std=0.02)

    @property
    def tokenizer(self) -> WordTokenizer:
        return WordTokenizer(list(self.config.vocab), self.config.max_length)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        pad = input_ids == self.config.vocab.index(PAD)
        h = self.token_embedding(input_ids) + self.position_embedding[: input_ids.shape[1]]
        return self.final_norm(self.encoder(h, src_key_padding_mask=pad))

    def encode(self, prompts: list[str]) -> torch.Tensor:
        """Hidden states (B, max_length, hidden_size) of `prompts`."""
        return self(self.tokenizer(prompts).to(self.device))
