"""The project's own small DNA language model: a GPN-style dilated CNN masked LM.

It is a regular ``transformers`` model (``PreTrainedModel`` registered with the Auto classes), so
``AutoModelForMaskedLM.from_pretrained(folder)`` loads it like any hub model once ``genosae`` is
imported. Tokenization is single-nucleotide through a ``PreTrainedTokenizerFast`` saved beside it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)
from transformers.modeling_outputs import BaseModelOutput, MaskedLMOutput

from genosae.genome.reference import encode_bases

VOCAB: dict[str, int] = {"[PAD]": 0, "[MASK]": 1, "[UNK]": 2, "A": 3, "C": 4, "G": 5, "T": 6, "N": 7}
PAD_ID, MASK_ID, UNK_ID = 0, 1, 2
BASE_IDS = np.array([3, 4, 5, 6])  # A C G T

#: Token id of each base code of :func:`genosae.genome.reference.encode_bases` (A C G T N, other = UNK).
TOKEN_OF_CODE = np.array([3, 4, 5, 6, 7, UNK_ID], dtype=np.int64)


def token_ids(seq: str | bytes | np.ndarray) -> np.ndarray:
    """Vectorised DNA -> token ids, the same ids as the saved tokenizer (ACGTN in either case; any
    other character ``[UNK]``); ``seq`` as :func:`~genosae.genome.reference.encode_bases` takes it."""
    return TOKEN_OF_CODE[encode_bases(seq)]


class GenosaeCNNConfig(PretrainedConfig):
    """Configuration of :class:`GenosaeCNNForMaskedLM`.

    ``kernel_size`` is the convolution width of every block; ``first_kernel_size`` (``None``: the same)
    that of block 0 only, e.g. as long as a transcription-factor motif. Both must be odd (symmetric
    padding keeps the sequence length).
    """

    model_type = "genosae-cnn"

    def __init__(
        self,
        vocab_size: int = len(VOCAB),
        hidden_size: int = 192,
        num_hidden_layers: int = 8,
        kernel_size: int = 9,
        dilations: list[int] | None = None,
        intermediate_size: int | None = None,
        layer_norm_eps: float = 1e-5,
        pad_token_id: int = PAD_ID,
        mask_token_id: int = MASK_ID,
        first_kernel_size: int | None = None,
        **kwargs,
    ) -> None:
        for name, size in (("kernel_size", kernel_size), ("first_kernel_size", first_kernel_size)):
            if size is not None and (int(size) != size or size < 1 or size % 2 == 0):
                raise ValueError(f"{name} must be a positive odd integer (symmetric padding keeps the "
                                 f"sequence length), got {size!r}")
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.kernel_size = kernel_size
        self.first_kernel_size = first_kernel_size
        base = [1, 2, 4, 8, 16, 32]
        self.dilations = list(dilations) if dilations else [base[i % len(base)] for i in range(num_hidden_layers)]
        self.intermediate_size = intermediate_size or 2 * hidden_size
        self.layer_norm_eps = layer_norm_eps
        self.mask_token_id = mask_token_id
        super().__init__(pad_token_id=pad_token_id, **kwargs)

    def block_kernel_size(self, i: int) -> int:
        """Convolution width of block ``i``."""
        return self.first_kernel_size if i == 0 and self.first_kernel_size is not None else self.kernel_size

    @property
    def receptive_field(self) -> int:
        return 1 + sum((self.block_kernel_size(i) - 1) * d for i, d in enumerate(self.dilations))


class _ConvBlock(nn.Module):
    """Dilated convolution + feed-forward, each with a residual connection (GPN's ConvLayer)."""

    def __init__(self, cfg: GenosaeCNNConfig, dilation: int, kernel_size: int) -> None:
        super().__init__()
        pad = dilation * (kernel_size - 1) // 2
        self.conv = nn.Conv1d(cfg.hidden_size, cfg.hidden_size, kernel_size, dilation=dilation, padding=pad)
        self.conv_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.ffn = nn.Sequential(
            nn.Linear(cfg.hidden_size, cfg.intermediate_size),
            nn.GELU(),
            nn.Linear(cfg.intermediate_size, cfg.hidden_size),
        )
        self.ffn_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, x_BLD: torch.Tensor) -> torch.Tensor:
        h = self.conv(x_BLD.transpose(1, 2)).transpose(1, 2)
        x_BLD = x_BLD + self.conv_norm(nn.functional.gelu(h))
        return x_BLD + self.ffn_norm(self.ffn(x_BLD))


class GenosaeCNNPreTrainedModel(PreTrainedModel):
    config_class = GenosaeCNNConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = False

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Conv1d):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


class GenosaeCNNModel(GenosaeCNNPreTrainedModel):
    """Embedding + dilated conv blocks. ``hidden_states[i]`` is the output of block ``i`` (0 = embedding)."""

    def __init__(self, config: GenosaeCNNConfig) -> None:
        super().__init__(config)
        self.embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.layers = nn.ModuleList(_ConvBlock(config, d, config.block_kernel_size(i))
                                    for i, d in enumerate(config.dilations))
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> BaseModelOutput:
        x = self.embeddings(input_ids)
        if attention_mask is not None:
            keep = attention_mask.unsqueeze(-1).to(x.dtype)
            x = x * keep
        hidden = [x] if output_hidden_states else None
        for layer in self.layers:
            x = layer(x)
            if attention_mask is not None:
                x = x * keep
            if hidden is not None:
                hidden.append(x)
        return BaseModelOutput(last_hidden_state=x, hidden_states=tuple(hidden) if hidden else None)


class GenosaeCNNForMaskedLM(GenosaeCNNPreTrainedModel):
    def __init__(self, config: GenosaeCNNConfig) -> None:
        super().__init__(config)
        self.model = GenosaeCNNModel(config)
        self.lm_head = nn.Sequential(
            nn.Linear(config.hidden_size, config.hidden_size),
            nn.GELU(),
            nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps),
            nn.Linear(config.hidden_size, config.vocab_size),
        )
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> MaskedLMOutput:
        out = self.model(input_ids, attention_mask=attention_mask, output_hidden_states=output_hidden_states)
        logits = self.lm_head(out.last_hidden_state)
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100)
        return MaskedLMOutput(loss=loss, logits=logits, hidden_states=out.hidden_states)


AutoConfig.register(GenosaeCNNConfig.model_type, GenosaeCNNConfig, exist_ok=True)
AutoModel.register(GenosaeCNNConfig, GenosaeCNNModel, exist_ok=True)
AutoModelForMaskedLM.register(GenosaeCNNConfig, GenosaeCNNForMaskedLM, exist_ok=True)


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Single-nucleotide tokenizer (uppercases; anything not ACGTN is ``[UNK]``), exact offsets."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers

    tok = Tokenizer(models.WordLevel(vocab=dict(VOCAB), unk_token="[UNK]"))
    tok.normalizer = normalizers.Sequence([normalizers.Replace(c, c.upper()) for c in "acgtn"])
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        mask_token="[MASK]",
        model_max_length=1_000_000,
    )


@dataclass
class MaskedBatch:
    input_ids: torch.Tensor
    labels: torch.Tensor


def mask_tokens(ids_BL: torch.Tensor, rate: float, generator: torch.Generator, *,
                span: tuple[int, int] = (1, 1)) -> MaskedBatch:
    """BERT masking of base tokens (ids 3..6): of the chosen ``rate``, 80% [MASK], 10% random base, 10% kept.

    Parameters
    ----------
    ids_BL
        Token ids.
    rate
        Expected fraction of base tokens chosen (targets).
    generator
        Source of all randomness (its state is part of a training checkpoint).
    span
        ``(lo, hi)``: with ``(1, 1)`` (default) each base is chosen independently, as always. Otherwise
        contiguous spans of uniform length in ``[lo, hi]`` are chosen (SpanBERT-style), each inside
        the sequence, their starts at the rate for which the expected chosen fraction, overlaps
        included, is ``rate`` (:func:`span_start_rate`). [MASK] / random / keep is decided per span
        (a base covered twice follows the later start); non-base tokens are never changed or targets.

    Returns
    -------
    :class:`MaskedBatch`: inputs, and labels (the original id at targets, -100 elsewhere).
    """
    lo, hi = span
    if not 1 <= lo <= hi:
        raise ValueError(f"mask span (lo, hi) needs 1 <= lo <= hi, got {span!r}")
    is_base = (ids_BL >= 3) & (ids_BL <= 6)
    if (lo, hi) == (1, 1):
        chosen = (torch.rand(ids_BL.shape, generator=generator) < rate) & is_base
        roll = torch.rand(ids_BL.shape, generator=generator)
    else:
        chosen, roll = _span_cover(ids_BL.shape, rate, lo, hi, generator)
        chosen &= is_base
    labels = torch.where(chosen, ids_BL, torch.full_like(ids_BL, -100))
    inputs = ids_BL.clone()
    inputs[chosen & (roll < 0.8)] = MASK_ID
    rand_sel = chosen & (roll >= 0.8) & (roll < 0.9)
    inputs[rand_sel] = torch.randint(3, 7, ids_BL.shape, generator=generator)[rand_sel]
    return MaskedBatch(inputs, labels)


@functools.lru_cache(maxsize=64)
def span_start_rate(rate: float, lo: int, hi: int, length: int) -> float:
    """Span-start probability per position for which spans that fit in a sequence of ``length``
    (lengths uniform in ``[lo, hi]``, overlaps merged) cover a fraction ``rate`` of it on average.

    Position ``j`` stays uncovered with probability ``prod_o (1 - p q(j - o, o))``, ``q(s, o)`` being
    the chance that a span starting at ``s`` is longer than ``o`` and fits; ``p`` solves
    ``mean_j (1 - prod_o ...) = rate`` by bisection (``1.0`` when ``rate`` is out of reach).
    """
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"mask rate must be in [0, 1), got {rate!r}")
    j = np.arange(length)[:, None]
    o = np.arange(hi)[None, :]
    start = j - o
    n_len = np.minimum(hi, length - start) - np.maximum(lo, o + 1) + 1
    q = np.where(start >= 0, np.clip(n_len, 0, None) / (hi - lo + 1), 0.0)
    a, b = 0.0, 1.0
    for _ in range(50):
        p = (a + b) / 2
        if (1.0 - np.prod(1.0 - p * q, axis=1)).mean() < rate:
            a = p
        else:
            b = p
    return (a + b) / 2


def _span_cover(shape: torch.Size, rate: float, lo: int, hi: int,
                generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions covered by random spans that fit in the sequence and, per position, the 80/10/10
    roll of the span covering it (of the latest start where spans overlap)."""
    n_l = shape[1]
    starts = torch.rand(shape, generator=generator) < span_start_rate(float(rate), lo, hi, n_l)
    length = torch.randint(lo, hi + 1, shape, generator=generator)
    starts &= torch.arange(n_l) + length <= n_l  # spans fit: runs are never cut at the edges
    span_roll = torch.rand(shape, generator=generator)
    covered = torch.zeros(shape, dtype=torch.bool)
    roll = torch.ones(shape)
    for o in range(hi - 1, -1, -1):  # offset from the start; later starts (smaller o) overwrite
        hit = starts[:, : n_l - o] & (length[:, : n_l - o] > o)
        covered[:, o:] |= hit
        roll[:, o:] = torch.where(hit, span_roll[:, : n_l - o], roll[:, o:])
    return covered, roll
