"""One interface over any Hugging Face DNA language model: load, tokenize with an exact token→base
map, read one layer's hidden states, and score the model's own LM loss with that layer edited.

``load_model`` picks the Auto class from the config (masked LM, else causal LM, else bare model),
never contacts a hub unless ``local_files_only=False``, and resolves ``layer`` to the module whose
output *is* ``output_hidden_states[layer]`` by probing the model once (so the hook is exact also for
models whose last hidden state is taken after a final norm). Hidden states are then read with a
forward hook that stops the forward pass right after that module. Models that return no hidden
states (GPN) get them from their stack of layers; models whose ``forward`` takes no
``attention_mask`` (GPN, HyenaDNA, Caduceus) are never shown padding. GPN checkpoints register
their model types through the ``gpn`` package on load; Evo 2 (``evo2:<name>``) goes through
:mod:`genosae.model.evo2`.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from torch import nn

import genosae.model.lm  # noqa: F401  (registers the default model type with the Auto classes)
from genosae.errors import InputError
from genosae.genome.reference import reverse_complement

log = logging.getLogger(__name__)

Tokenization = Literal["char", "kmer", "bpe"]
ModelKind = Literal["mlm", "causal", "base"]
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# byte -> byte: upper-case ACGTN, everything else (IUPAC codes, gaps) -> N
_NORMALISE = bytes((c if c in b"ACGTN" else (c - 32 if c in b"acgtn" else ord("N"))) for c in range(256))


_revcomp = reverse_complement  # the name is shadowed by the ``reverse_complement`` flag below

#: ``model.path`` prefix of Evo 2 checkpoints, loaded through the ``evo2`` package
EVO2_PREFIX = "evo2:"
#: model types the ``gpn`` package registers with the Auto classes (``gpn.register_auto_classes("gpn")``)
GPN_MODEL_TYPES = frozenset({"GPN", "ConvNet", "GPNRoFormer"})


def normalise_dna(seq: str) -> str:
    """Upper-case ACGTN; any other character becomes ``N`` (same length, so coordinates hold)."""
    return seq.encode("latin-1", errors="replace").translate(_NORMALISE).decode("ascii")


@dataclass
class TokenizedBatch:
    """Padded token ids with the exact base span of every token.

    ``bp_start``/``bp_end`` are 0-based half-open positions in the input sequence, ``-1`` for
    special and padding tokens; ``has_n`` marks tokens covering an ``N``; ``lengths`` are token counts.
    """

    input_ids: torch.Tensor  # [B, T] int64
    attention_mask: torch.Tensor  # [B, T] int64
    bp_start: torch.Tensor  # [B, T] int64
    bp_end: torch.Tensor  # [B, T] int64
    is_special: torch.Tensor  # [B, T] bool
    has_n: torch.Tensor  # [B, T] bool
    lengths: torch.Tensor  # [B] int64


@dataclass
class TokenSpans:
    """Per-token base spans of one sequence (numpy ``[T]``); -1 for special tokens."""

    bp_start: np.ndarray
    bp_end: np.ndarray
    is_special: np.ndarray
    has_n: np.ndarray

    def __len__(self) -> int:
        return len(self.bp_start)

    def reverse_strand(self, length: int) -> TokenSpans:
        """Spans of a read of the reverse complement, in forward coordinates of a ``length``-bp sequence."""
        start = np.where(self.bp_end >= 0, length - self.bp_end, -1)
        end = np.where(self.bp_start >= 0, length - self.bp_start, -1)
        return TokenSpans(start, end, self.is_special, self.has_n)

    @classmethod
    def concat(cls, parts: Sequence[tuple[int, TokenSpans]]) -> TokenSpans:
        """Join the spans of consecutive pieces, each ``(offset of the piece in bp, its spans)``."""
        def cat(get: Callable[[int, TokenSpans], np.ndarray]) -> np.ndarray:
            return np.concatenate([get(off, sp) for off, sp in parts])
        return cls(cat(lambda o, sp: np.where(sp.bp_start >= 0, sp.bp_start + o, -1)),
                   cat(lambda o, sp: np.where(sp.bp_end >= 0, sp.bp_end + o, -1)),
                   cat(lambda _o, sp: sp.is_special), cat(lambda _o, sp: sp.has_n))


class _StopForward(Exception):
    """Raised by the capture hook to end the forward pass once the wanted layer has run."""


def _first_tensor(out: Any) -> torch.Tensor | None:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, tuple | list) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    if hasattr(out, "keys") and hasattr(out, "to_tuple"):  # ModelOutput
        first = out.to_tuple()[0] if out.to_tuple() else None
        return first if isinstance(first, torch.Tensor) else None
    return None


def _replace_first(out: Any, new: torch.Tensor) -> Any:
    if isinstance(out, torch.Tensor):
        return new
    if isinstance(out, tuple):
        return (new, *out[1:])
    if isinstance(out, list):
        return [new, *out[1:]]
    key = next(iter(out.keys()))
    out[key] = new
    return out


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} requested but CUDA is not available; use auto or cpu",
                         record="model.device")
    return dev


def _resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise InputError(f"dtype must be auto or one of {sorted(DTYPES)}, got {dtype!r}", record="model.dtype")
    return DTYPES[dtype]


def detect_tokenization(tokenizer: Any) -> tuple[Tokenization, int]:
    """Classify a DNA tokenizer by its vocabulary: ``("char", 1)``, ``("kmer", k)`` or ``("bpe", 0)``."""
    special = set(tokenizer.all_special_tokens)
    toks = [t.removeprefix("##") for t in tokenizer.get_vocab() if t not in special]
    toks = [t for t in toks if t and not (t.startswith("<") and t.endswith(">")) and not t.startswith("[")]
    dna = [t for t in toks if set(t.upper()) <= set("ACGTN")]
    lengths = np.array([len(t) for t in dna])
    if len(dna) == 0:
        return "bpe", 0
    if lengths.max() == 1:
        return "char", 1
    k = int(np.bincount(lengths).argmax())
    if k > 1 and (lengths == k).sum() >= 0.9 * 4**k and np.isin(lengths, [1, k]).all():
        return "kmer", k
    return "bpe", 0


class EncodedSequence(NamedTuple):
    """One encoded sequence: token ids, special mask, base spans (-1 for specials), N coverage."""

    ids: np.ndarray
    special: np.ndarray
    start: np.ndarray
    end: np.ndarray
    has_n: np.ndarray


def covers_n(seq: str, start: np.ndarray, end: np.ndarray, special: np.ndarray) -> np.ndarray:
    """Whether each non-special token's span holds an ``N``."""
    n_cum = np.concatenate([[0], np.cumsum(np.frombuffer(seq.encode(), dtype=np.uint8) == ord("N"))])
    return np.where(special, False, n_cum[np.maximum(end, 0)] - n_cum[np.maximum(start, 0)] > 0)


class ModelAdapter:
    """A loaded DNA LM with one chosen layer. Build with :func:`load_model`.

    Attributes
    ----------
    model, tokenizer
        The ``transformers`` model (eval mode) and tokenizer.
    kind
        ``"mlm"``, ``"causal"`` or ``"base"`` (no LM head: :meth:`lm_loss` unavailable).
    tokenization, kmer
        Tokenizer family (``char``/``kmer``/``bpe``) and k for ``kmer``.
    layer
        Non-negative hidden-state index (0 = embeddings).
    n_hidden
        Number of hidden states the model exposes (layers + 1).
    d_model
        Hidden width.
    hook_module
        Name of the module whose output equals ``hidden_states[layer]``.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        *,
        layer: int = -1,
        kind: ModelKind = "mlm",
        batch_size: int = 32,
        source: dict | None = None,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.kind: ModelKind = kind
        self.batch_size = int(batch_size)
        self.source = source or {}
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        params = inspect.signature(model.forward).parameters
        self._forward_params = set(params)
        self._forward_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        # a model that cannot be told which tokens are padding is never shown any (one length per batch)
        self._takes_mask = "attention_mask" in params
        self.tokenization, self.kmer = detect_tokenization(tokenizer)
        self._use_offsets = bool(getattr(tokenizer, "is_fast", False))
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._token_len = self._token_length_table()
        self._lower = self._needs_lower_case()
        self.n_hidden, self.d_model, self.layer, self.hook_module = self._probe_layer(layer)
        self._module = dict(self.model.named_modules())[self.hook_module]

    # ------------------------------------------------------------------ tokenization
    def _token_length_table(self) -> np.ndarray:
        """Bases covered by each vocabulary id (``##``/``Ġ``/``▁`` prefixes removed; unknown = 1)."""
        vocab = self.tokenizer.get_vocab()
        table = np.ones(max(max(vocab.values()) + 1, len(self.tokenizer)), dtype=np.int64)
        for tok, i in vocab.items():
            table[i] = max(len(tok.removeprefix("##").lstrip("Ġ▁")), 0)
        return table

    def _needs_lower_case(self) -> bool:
        """Whether bases must reach the tokenizer lower-case (a lower-case vocabulary without a
        lower-casing normaliser); a tokenizer that maps both cases to its unknown token is refused."""
        unk = self.tokenizer.unk_token_id
        if unk is None:
            return False

        def unknown(bases: str) -> bool:
            return unk in self.tokenizer(bases, add_special_tokens=False)["input_ids"]

        if not unknown("ACGT"):
            return False
        if not unknown("acgt"):
            return True
        raise InputError(f"the tokenizer of {self.source.get('path')} maps the bases A, C, G, T to its unknown "
                         f"token {self.tokenizer.unk_token!r} in both cases: not a DNA tokenizer", record="model.path")

    def _spans_one(self, seq: str, ids: np.ndarray, special: np.ndarray,
                   offsets: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        if offsets is not None:
            start, end = offsets[:, 0].astype(np.int64), offsets[:, 1].astype(np.int64)
        else:
            lens = np.where(special, 0, self._token_len[ids])
            end = np.cumsum(lens)
            start = end - lens
        body = ~special
        s, e = start[body], end[body]
        ok = len(s) > 0 and s[0] == 0 and e[-1] == len(seq) and (s[1:] == e[:-1]).all() and (e > s).all()
        if not ok and len(seq) > 0:
            msg = (f"tokenizer {type(self.tokenizer).__name__} of {self.source.get('path')} does not map tokens "
                   f"one-to-one onto bases (sequence of {len(seq)} bp); overlapping k-mer tokenizers "
                   "(DNABERT-1) are not supported")
            raise InputError(msg, record="model.path")
        return np.where(special, -1, start), np.where(special, -1, end)

    def _encode(self, seqs: Sequence[str]) -> list[EncodedSequence]:
        """Token ids and base spans of each (normalised) sequence, unpadded."""
        kw: dict[str, Any] = {"add_special_tokens": True, "return_special_tokens_mask": True,
                              "return_attention_mask": False, "truncation": False}
        if self._use_offsets:
            kw["return_offsets_mapping"] = True
        enc = self.tokenizer([s.lower() for s in seqs] if self._lower else list(seqs), **kw)
        rows = []
        for i, seq in enumerate(seqs):
            ids = np.asarray(enc["input_ids"][i], dtype=np.int64)
            special = np.asarray(enc["special_tokens_mask"][i], dtype=bool)
            offsets = np.asarray(enc["offset_mapping"][i], dtype=np.int64).reshape(-1, 2) if self._use_offsets else None
            start, end = self._spans_one(seq, ids, special, offsets)
            rows.append(EncodedSequence(ids, special, start, end, covers_n(seq, start, end, special)))
        return rows

    def _pad(self, rows: Sequence[EncodedSequence]) -> TokenizedBatch:
        """Right-pad encoded rows into one batch."""
        lengths = np.array([len(r.ids) for r in rows], dtype=np.int64)
        B, T = len(rows), int(lengths.max()) if len(rows) else 0
        pos = np.arange(T)[None, :] < lengths[:, None]

        def pad(field: str, fill: Any, dtype: Any) -> torch.Tensor:
            out = np.full((B, T), fill, dtype=dtype)
            if rows:
                out[pos] = np.concatenate([getattr(r, field) for r in rows])
            return torch.from_numpy(out)

        return TokenizedBatch(
            input_ids=pad("ids", self._pad_id, np.int64),
            attention_mask=torch.from_numpy(pos.astype(np.int64)),
            bp_start=pad("start", -1, np.int64),
            bp_end=pad("end", -1, np.int64),
            is_special=pad("special", True, bool),
            has_n=pad("has_n", False, bool),
            lengths=torch.from_numpy(lengths),
        )

    def tokenize(self, seqs: Sequence[str]) -> TokenizedBatch:
        """Tokenize sequences (upper-cased, non-ACGT → N) into a right-padded batch with base spans."""
        return self._pad(self._encode([normalise_dna(s) for s in seqs]))

    # ------------------------------------------------------------------ layer resolution
    def _forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kw: Any) -> Any:
        if not self._forward_kwargs:
            kw = {k: v for k, v in kw.items() if k in self._forward_params}
        if self._takes_mask:
            kw["attention_mask"] = attention_mask.to(self.device)
        return self.model(input_ids=input_ids.to(self.device), **kw)

    def _probe_layer(self, layer: int) -> tuple[int, int, int, str]:
        """Find the module whose output equals ``output_hidden_states[layer]`` on a probe sequence."""
        rng = np.random.default_rng(0)
        probe = "".join(rng.choice(list("ACGT"), size=60))
        batch = self.tokenize([probe])
        outputs: list[tuple[str, torch.Tensor]] = []
        calls: dict[str, int] = {}
        stack = self._blocks()
        stack_input: list[torch.Tensor] = []

        def record(name: str) -> Callable:
            def hook(_m: nn.Module, args: Any, out: Any) -> None:
                calls[name] = calls.get(name, 0) + 1
                if stack and name == stack[0] and calls[name] == 1 and args and isinstance(args[0], torch.Tensor):
                    stack_input.append(args[0].detach())
                t = _first_tensor(out)
                if t is not None and calls[name] == 1:
                    outputs.append((name, t.detach()))
            return hook

        handles = [m.register_forward_hook(record(n)) for n, m in self.model.named_modules() if n]
        try:
            with torch.inference_mode():
                out = self._forward(batch.input_ids, batch.attention_mask, output_hidden_states=True)
        finally:
            for h in handles:
                h.remove()
        hidden = getattr(out, "hidden_states", None) or self._stack_hidden_states(stack, stack_input, dict(outputs))
        n_hidden = len(hidden)
        resolved = layer + n_hidden if layer < 0 else layer
        if not 0 <= resolved < n_hidden:
            raise InputError(f"layer {layer} is out of range: this model has hidden states 0..{n_hidden - 1} "
                             f"(or -{n_hidden}..-1)", record="model.layer")
        target = hidden[resolved]
        tol = 1e-5 if target.dtype == torch.float32 else 1e-2
        scale = float(target.float().abs().max()) + 1e-6

        def same(t: torch.Tensor) -> bool:
            return t.shape == target.shape and bool(
                torch.allclose(t.float(), target.float(), atol=tol * scale, rtol=tol))

        matches = [n for n, t in outputs if calls[n] == 1 and same(t)]
        if not matches:
            raise InputError(f"no module of {type(self.model).__name__} outputs hidden state {resolved}; "
                             "choose another layer", record="model.layer")
        blocks = self._blocks(n_hidden - 1)
        preferred = blocks[resolved - 1] if blocks and resolved >= 1 else None
        name = preferred if preferred in matches else matches[0]
        return n_hidden, int(target.shape[-1]), resolved, name

    def _blocks(self, n_layers: int | None = None) -> list[str]:
        """Names of the model's layers: the first ``ModuleList``/``Sequential`` of ``n_layers`` modules
        (default: the config's ``num_hidden_layers``, or ``n_layers`` for GPN's legacy ConvNet)."""
        if n_layers is None:
            cfg = getattr(self.model, "config", None)
            n_layers = getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "n_layers", None)
        for name, m in self.model.named_modules():
            if isinstance(m, nn.ModuleList | nn.Sequential) and n_layers and len(m) == n_layers:
                return [f"{name}.{i}" for i in range(n_layers)]
        return []

    def _stack_hidden_states(self, stack: list[str], stack_input: list[torch.Tensor],
                             outputs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Hidden states of a model that returns none (GPN), in the ``transformers`` convention: the
        input of layer 1, the outputs of layers 1..n-1, and the base model's ``last_hidden_state``
        (after a final norm, if the model has one) as state n."""
        if not stack or not stack_input or any(b not in outputs for b in stack):
            raise InputError(f"model {self.source.get('path')} returns no hidden states and has no stack of "
                             "layers to read them from", record="model.path")
        states = [stack_input[0], *(outputs[b] for b in stack)]
        base = getattr(self.model, "base_model", self.model)
        if base is not self.model:
            base_name = next(n for n, m in self.model.named_modules() if m is base)
            last = outputs.get(base_name)
            if last is not None and last.shape == states[-1].shape:
                states[-1] = last
        return states

    @contextlib.contextmanager
    def _hook(self, fn: Callable[[nn.Module, Any, Any], Any]) -> Iterator[None]:
        handle = self._module.register_forward_hook(fn)
        try:
            yield
        finally:
            handle.remove()

    # ------------------------------------------------------------------ batching
    def _buckets(self, lengths: Sequence[int]) -> Iterator[np.ndarray]:
        """Indices of rows of ``lengths`` tokens in length-sorted batches of ``batch_size`` (of one
        length each when the model takes no attention mask, so that it never reads padding)."""
        lengths = np.asarray(lengths, dtype=np.int64)
        order = np.argsort(lengths, kind="stable")
        groups = [order] if self._takes_mask else np.split(order, np.flatnonzero(np.diff(lengths[order])) + 1)
        for group in groups:
            for s in range(0, len(group), self.batch_size):
                yield group[s:s + self.batch_size]

    def _layer_acts(self, batch: TokenizedBatch) -> torch.Tensor:
        """``[B, T, D]`` hidden state at ``self.layer``, stopping the forward pass there."""
        captured: list[torch.Tensor] = []

        def hook(_m: nn.Module, _args: Any, out: Any) -> None:
            captured.append(_first_tensor(out))
            raise _StopForward

        with self._hook(hook):
            try:
                self._forward(batch.input_ids, batch.attention_mask)
            except _StopForward:
                pass
        if not captured:
            msg = f"the hook on {self.hook_module} never fired"
            raise RuntimeError(msg)
        return captured[0]

    def _read(self, seqs: Sequence[str]) -> list[tuple[torch.Tensor, TokenSpans]]:
        """``(acts [T_i, D] on CPU, spans)`` of each normalised sequence as the model reads it."""
        rows = self._encode(seqs)
        results: list[tuple[torch.Tensor, TokenSpans] | None] = [None] * len(seqs)
        for idx in self._buckets([len(r.ids) for r in rows]):
            batch = self._pad([rows[i] for i in idx])
            acts = self._layer_acts(batch).cpu()
            for b, i in enumerate(idx):
                n = int(batch.lengths[b])
                r = rows[i]
                results[i] = (acts[b, :n], TokenSpans(r.start, r.end, r.special, r.has_n))
        return results  # type: ignore[return-value]

    @torch.inference_mode()
    def hidden_states(
        self, seqs: Sequence[str], *, reverse_complement: bool = False
    ) -> list[tuple[torch.Tensor, TokenSpans]]:
        """Layer ``self.layer`` hidden states of each sequence, with token spans.

        Returns, per input sequence and in input order, ``(acts [T_i, D] on CPU, spans)`` where
        ``T_i`` counts all tokens incl. specials (padding removed). With ``reverse_complement`` the
        model reads the reverse complement and spans are given in forward-strand coordinates.
        """
        seqs = [normalise_dna(s) for s in seqs]
        if not reverse_complement:
            return self._read(seqs)
        read = self._read([_revcomp(s) for s in seqs])
        return [(acts, spans.reverse_strand(len(s))) for s, (acts, spans) in zip(seqs, read)]

    # ------------------------------------------------------------------ LM loss
    def _transform_hook(self, transform: Callable[[torch.Tensor], torch.Tensor]) -> Callable:
        def hook(_m: nn.Module, _args: Any, out: Any) -> Any:
            h = _first_tensor(out)
            new = transform(h)
            if new.shape != h.shape:
                msg = f"transform changed the hidden state's shape {tuple(h.shape)} -> {tuple(new.shape)}"
                raise ValueError(msg)
            return _replace_first(out, new.to(h.dtype))
        return hook

    @torch.inference_mode()
    def lm_loss(
        self,
        seqs: Sequence[str],
        *,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        mask_rate: float = 0.15,
        seed: int = 0,
    ) -> float:
        """The model's own LM loss in nats per predicted token, optionally with layer ``self.layer``
        replaced by ``transform(hidden_BTD)`` (spliced-in SAE reconstruction, ablations).

        Masked LMs: a seeded ``mask_rate`` of the non-special tokens of each sequence (at least one)
        is replaced by the mask token and scored (masks depend only on ``seed`` and the sequence's
        position in ``seqs``). Causal LMs: next-token loss over all non-special targets.
        """
        if self.kind == "base":
            raise InputError(f"model {self.source.get('path')} has no LM head; lm_loss needs a masked or "
                             "causal LM", record="model.path")
        rows = self._encode([normalise_dna(s) for s in seqs])
        mask_id = self.tokenizer.mask_token_id if self.kind == "mlm" else None
        if self.kind == "mlm" and mask_id is None:
            raise InputError("the tokenizer has no mask token; cannot score a masked LM", record="model.path")
        total, count = 0.0, 0
        ctx = self._hook(self._transform_hook(transform)) if transform is not None else contextlib.nullcontext()
        with ctx:
            for idx in self._buckets([len(r.ids) for r in rows]):
                batch = self._pad([rows[i] for i in idx])
                ids, attn = batch.input_ids, batch.attention_mask
                scorable = (attn.bool() & ~batch.is_special)
                if self.kind == "mlm":
                    u = torch.full(ids.shape, 2.0, dtype=torch.float64)
                    for b, i in enumerate(idx):  # per-sequence stream: masks do not depend on batching
                        n = int(batch.lengths[b])
                        u[b, :n] = torch.from_numpy(np.random.default_rng([seed, int(i)]).random(n))
                    u = torch.where(scorable, u, torch.full_like(u, 2.0))
                    chosen = scorable & ((u < mask_rate) | (u == u.min(dim=1, keepdim=True).values))
                    inputs = torch.where(chosen, torch.full_like(ids, mask_id), ids)
                    logits = self._forward(inputs, attn).logits
                    targets = torch.where(chosen, ids, torch.full_like(ids, -100))
                else:
                    logits = self._forward(ids, attn).logits[:, :-1]
                    targets = torch.where(scorable[:, 1:], ids[:, 1:], torch.full_like(ids[:, 1:], -100))
                targets = targets.to(logits.device)
                loss = nn.functional.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(),
                                                   ignore_index=-100, reduction="sum")
                total += float(loss)
                count += int((targets != -100).sum())
        return total / max(count, 1)

    @torch.inference_mode()
    def sequence_log_likelihood(
        self,
        seqs: Sequence[str],
        *,
        spans: Sequence[tuple[int, int]] | None = None,
        reverse_complement: bool = False,
    ) -> np.ndarray:
        """Log-likelihood in nats the model gives each sequence, ``float64 [len(seqs)]``.

        Causal LMs: the sum of ``log p(token | the tokens before it)`` over every non-special token
        that has a predecessor. Masked LMs: the pseudo-log-likelihood, each token scored with itself
        masked and the rest given, over the tokens overlapping ``spans[i] = (start, end)`` (base
        coordinates of ``seqs[i]``; every token when ``spans`` is None). With ``reverse_complement``
        the model reads the reverse complement (``spans`` stay in forward coordinates).
        """
        if self.kind == "base":
            raise InputError(f"model {self.source.get('path')} has no LM head; log-likelihoods need a masked "
                             "or causal LM", record="model.path")
        seqs = [normalise_dna(s) for s in seqs]
        out = np.zeros(len(seqs), dtype=np.float64)
        for i, seq in enumerate(seqs):
            text = _revcomp(seq) if reverse_complement else seq
            batch = self.tokenize([text])
            n = int(batch.lengths[0])
            ids = batch.input_ids[:, :n]
            scorable = ~batch.is_special[0, :n]
            if spans is not None:
                a, b = spans[i]
                if reverse_complement:
                    a, b = len(seq) - b, len(seq) - a
                scorable &= (batch.bp_start[0, :n] < b) & (batch.bp_end[0, :n] > a)
            if self.kind == "causal":
                logp = torch.log_softmax(self._forward(ids, torch.ones_like(ids)).logits[0, :-1].float(), -1)
                target = ids[0, 1:].to(logp.device)
                keep = scorable[1:].to(logp.device)
                out[i] = float(logp.gather(1, target[:, None])[:, 0][keep].sum())
                continue
            mask_id = self.tokenizer.mask_token_id
            if mask_id is None:
                raise InputError("the tokenizer has no mask token; cannot score a masked LM", record="model.path")
            pos = scorable.nonzero()[:, 0]
            total = 0.0
            for c in range(0, len(pos), self.batch_size):
                p = pos[c:c + self.batch_size]
                copies = ids.repeat(len(p), 1)
                copies[torch.arange(len(p)), p] = mask_id
                logits = self._forward(copies, torch.ones_like(copies)).logits
                logp = torch.log_softmax(logits[torch.arange(len(p)), p.to(logits.device)].float(), -1)
                total += float(logp.gather(1, ids[0, p].to(logp.device)[:, None]).sum())
            out[i] = total
        return out


_CAUSAL_TYPES = {"gpt2", "llama", "mistral", "gpt_neox", "hyenadna", "mamba", "mamba2", "qwen2", "gemma",
                 "stripedhyena", "evo", "phi", "falcon"}


def _register_gpn(model_type: str) -> None:
    """Register GPN's model types with the Auto classes (``gpn`` ≥ 0.9; older versions on import)."""
    try:
        import gpn
    except ImportError as err:
        raise InputError(f"model type {model_type!r} is a GPN model: install the gpn extra "
                         "(pip install 'genosae[gpn]')", record="model.path") from err
    register = getattr(gpn, "register_auto_classes", None)
    if register is None:
        importlib.import_module("gpn.model")
    else:
        register("gpn")


def _load_config(name: str, *, revision: str | None, local_files_only: bool, trust_remote_code: bool) -> Any:
    from transformers import AutoConfig, PretrainedConfig

    is_local = Path(name).exists()
    try:
        config_dict, _ = PretrainedConfig.get_config_dict(name, revision=revision, local_files_only=local_files_only)
        if config_dict.get("model_type") in GPN_MODEL_TYPES:
            _register_gpn(config_dict["model_type"])
        return AutoConfig.from_pretrained(name, revision=revision, local_files_only=local_files_only,
                                          trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        text = str(err)
        if "trust_remote_code" in text:
            raise InputError(f"{name} ships its own model code; set model.trust_remote_code: true if you trust it",
                             record="model.trust_remote_code") from err
        if is_local:
            raise InputError(f"{name} is not a transformers model folder (no readable config.json): {text[:200]}",
                             path=name, record="model.path") from err
        if local_files_only:
            raise InputError(f"model {name!r} is not in the local Hugging Face cache and model.local_files_only is "
                             f"true; download it first (`hf download {name}` on a machine with internet) or set "
                             "model.local_files_only: false", record="model.path") from err
        raise InputError(f"cannot load model {name!r}: {text[:200]}", record="model.path") from err


def load_model(
    name_or_path: str | Path,
    *,
    revision: str | None = None,
    layer: int = -1,
    device: str = "auto",
    dtype: str = "auto",
    local_files_only: bool = True,
    trust_remote_code: bool = False,
    batch_size: int = 32,
    submodule: str = "",
) -> ModelAdapter:
    """Load a DNA language model (hub id or local folder) and wrap it in a :class:`ModelAdapter`.

    The LM head class is chosen from the config: ``*ForMaskedLM`` architectures (or any model type
    registered for masked LM) load with ``AutoModelForMaskedLM``, decoder-only ones with
    ``AutoModelForCausalLM``, anything else with ``AutoModel`` (hidden states only). GPN model types
    are registered through the ``gpn`` package first. ``evo2:<name>`` (or ``evo2:<path>/<name>.pt``)
    loads Evo 2 through the ``evo2`` package (:func:`genosae.model.evo2.load_evo2`), where ``layer``
    is a block index and ``submodule`` names a module inside that block (``mlp.l3``).
    """
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

    name = str(name_or_path)
    if name.startswith(EVO2_PREFIX):
        from genosae.model.evo2 import load_evo2

        return load_evo2(name.removeprefix(EVO2_PREFIX), revision=revision, layer=layer, submodule=submodule,
                         device=device, dtype=dtype, local_files_only=local_files_only, batch_size=batch_size)
    if submodule:
        raise InputError(f"model.submodule ({submodule!r}) applies to Evo 2 models only; for {name} choose the "
                         "hidden state with model.layer", record="model.submodule")
    dev = _resolve_device(device)
    torch_dtype = _resolve_dtype(dtype, dev)
    kw = dict(revision=revision, local_files_only=local_files_only, trust_remote_code=trust_remote_code)
    config = _load_config(name, **kw)
    archs = " ".join(getattr(config, "architectures", None) or [])
    causal = "CausalLM" in archs or (getattr(config, "is_decoder", False) and "MaskedLM" not in archs) \
        or config.model_type in _CAUSAL_TYPES
    attempts: list[tuple[Any, ModelKind]] = [(AutoModelForCausalLM, "causal")] if causal else \
        [(AutoModelForMaskedLM, "mlm"), (AutoModelForCausalLM, "causal")]
    attempts.append((AutoModel, "base"))
    model, kind, errors = None, "base", []
    printed = io.StringIO()  # GPN's encoders print their dilation schedule while being built
    quiet = contextlib.redirect_stdout(printed) if config.model_type in GPN_MODEL_TYPES else contextlib.nullcontext()
    with quiet:
        for cls, k in attempts:
            try:
                model = cls.from_pretrained(name, config=config, dtype=torch_dtype, **kw)
                kind = k
                break
            except (ValueError, KeyError) as err:  # config not mapped to this Auto class
                errors.append(f"{cls.__name__}: {str(err)[:120]}")
    if printed.getvalue():
        log.debug("%s printed while loading: %s", name, printed.getvalue().strip())
    if model is None:
        raise InputError(f"cannot load {name} with any Auto class ({'; '.join(errors)})", record="model.path")
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, **kw)
    except (OSError, ValueError) as err:
        raise InputError(f"no tokenizer saved with {name}: {str(err)[:200]}", record="model.path") from err
    model = model.to(dev).eval()
    source = {"path": name, "revision": revision, "model_type": config.model_type,
              "config_sha": _config_sha(config), "kind": kind}
    adapter = ModelAdapter(model, tokenizer, layer=layer, kind=kind, batch_size=batch_size, source=source)
    log.info("loaded %s (%s, %s tokens) layer %d of %d, hook on %s, %s %s", name, kind, adapter.tokenization,
             adapter.layer, adapter.n_hidden - 1, adapter.hook_module, dev, torch_dtype)
    return adapter


def load_model_from_config(model_cfg: dict[str, Any], *, path: str | Path | None = None, layer: int | None = None,
                           device: str | None = None) -> ModelAdapter:
    """:func:`load_model` with the config's ``model`` section (``path`` overrides ``model.path`` and then
    drops ``model.revision``; ``layer`` and ``device`` override theirs)."""
    m = model_cfg
    return load_model(path if path is not None else m["path"], revision=None if path is not None else m.get("revision"),
                      layer=int(m.get("layer", -1) if layer is None else layer),
                      device=device or m.get("device", "auto"), dtype=m.get("dtype", "auto"),
                      local_files_only=m.get("local_files_only", True),
                      trust_remote_code=m.get("trust_remote_code", False),
                      batch_size=int(m.get("batch_size", 32)), submodule=m.get("submodule", ""))


def _config_sha(config: Any) -> str:
    from genosae._io import stable_hash

    d = config.to_dict()
    for k in ("_name_or_path", "transformers_version", "dtype", "torch_dtype", "_commit_hash"):
        d.pop(k, None)
    return stable_hash(d)


def fetch_model(name: str, *, revision: str | None = None, local_dir: str | None = None) -> str:
    """Download a hub model (weights, config, tokenizer, remote code) for later offline use.

    Run this on a login node with network access; compute jobs then load it with
    ``local_files_only=True`` (the default) and ``HF_HUB_OFFLINE=1``. ``evo2:<name>`` fetches that Evo 2
    checkpoint's hub repository. Returns the local folder.
    """
    import os

    from huggingface_hub import snapshot_download

    if name.startswith(EVO2_PREFIX):
        from genosae.model.evo2 import evo2_repo

        name = evo2_repo(name.removeprefix(EVO2_PREFIX))
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise InputError("HF_HUB_OFFLINE=1 is set: run fetch-model where the hub can be reached "
                         "(e.g. a login node), without that variable", record=name)
    try:
        return snapshot_download(repo_id=name, revision=revision, local_dir=local_dir)
    except Exception as err:  # network, auth or unknown repo: one line for the user
        raise InputError(f"could not download {name!r}: {type(err).__name__}: {str(err).splitlines()[0][:200]}",
                         record="model.path") from None
