"""Shared machinery of every SAE architecture: config base class, registry, normalisation, AuxK.

An SAE works in a *normalised* activation space: ``x_norm = (acts - act_mean) * act_scale`` where
``act_mean`` is the data mean and ``act_scale`` makes ``E||x_norm||^2 = d_in``. Both are buffers of
the module, so :meth:`SAE.encode` takes raw model activations and :meth:`SAE.decode` returns model
units. Tokens whose raw norm exceeds ``outlier_norm_factor`` times the median norm (measured on the
statistics sample) are outliers: :meth:`SAE.inlier_mask` flags them and training / evaluation skip
them; the absolute threshold is stored in ``outlier_norm_threshold``.

Sparse codes travel through training as COO triplets ``(rows_N, cols_N, vals_N)`` (``N`` active
entries, ``rows`` sorted): encoding gathers only the selected pre-activations (:class:`_GatherPre`:
no autograd graph over the dense ``[B, d_sae]`` activations) and decoding is an ``embedding_bag``
over decoder rows, so a TopK step costs two dense encoder GEMMs (forward, ``W_enc`` gradient) plus
``O(N * d_in)`` decoder work instead of five dense GEMMs.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from torch import nn
from torch.nn import functional as F

from genosae.errors import InputError
from genosae.sae.kernels import row_topk

BDecInit = Literal["geometric_median", "mean", "zeros"]
B_DEC_INITS: tuple[str, ...] = ("geometric_median", "mean", "zeros")


# --------------------------------------------------------------------------------------- config
@dataclass
class SAEConfig:
    """Architecture-independent SAE hyper-parameters (the model, not the optimiser).

    Parameters
    ----------
    d_in, d_sae
        Input width (model hidden size) and dictionary size.
    aux_k
        Dead latents used by the AuxK loss (``None``: ``d_in // 2``, Gao et al. 2024).
    aux_coefficient
        Weight of the AuxK loss (Gao et al.: 1/32).
    dead_tokens_threshold
        A latent that has not fired for this many training tokens is dead.
    b_dec_init
        How the pre-encoder bias is initialised from the first batch of (normalised) data.
    outlier_norm_factor
        Tokens with raw norm above this multiple of the median norm are excluded (``None``: keep all).
    outlier_norm_threshold
        The resulting absolute norm threshold (filled in from the data by the trainer).
    metadata
        Free-form provenance (model name, layer, hook name, data hash, ...).
    """

    d_in: int
    d_sae: int
    aux_k: int | None = None
    aux_coefficient: float = 1.0 / 32.0
    dead_tokens_threshold: int = 1_000_000
    b_dec_init: BDecInit = "geometric_median"
    outlier_norm_factor: float | None = 10.0
    outlier_norm_threshold: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def architecture(cls) -> str:
        """Registry name of the architecture this config describes."""
        raise NotImplementedError

    def __post_init__(self) -> None:
        if self.d_in < 1 or self.d_sae < 1:
            msg = f"d_in and d_sae must be >= 1, got {self.d_in}, {self.d_sae}"
            raise ValueError(msg)
        if self.b_dec_init not in B_DEC_INITS:
            msg = f"b_dec_init must be one of {B_DEC_INITS}, got {self.b_dec_init!r}"
            raise ValueError(msg)
        if self.outlier_norm_factor is not None and self.outlier_norm_factor <= 1:
            msg = f"outlier_norm_factor must be > 1 or None, got {self.outlier_norm_factor}"
            raise ValueError(msg)

    @property
    def effective_aux_k(self) -> int:
        return self.aux_k if self.aux_k is not None else max(1, self.d_in // 2)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict with an ``architecture`` key; inverse of :meth:`from_dict`."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["metadata"] = dict(self.metadata)
        out["architecture"] = self.architecture()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SAEConfig:
        """Build the config of ``data["architecture"]``; unknown keys are ignored.

        Called on a subclass, the architecture must match that subclass.
        """
        if "architecture" not in data:
            raise InputError("SAE config has no 'architecture' key", record="architecture")
        cfg_cls, _ = get_architecture(data["architecture"])
        if cls is not SAEConfig and cfg_cls is not cls:
            msg = (f"config describes a {data['architecture']!r} SAE, not {cls.architecture()!r}")
            raise InputError(msg, record="architecture")
        names = {f.name for f in dataclasses.fields(cfg_cls)}
        return cfg_cls(**{k: v for k, v in data.items() if k in names})


# ------------------------------------------------------------------------------------- registry
ARCHITECTURES: dict[str, tuple[type[SAEConfig], type[SAE]]] = {}


def register_architecture(cfg_cls: type[SAEConfig], sae_cls: type[SAE]) -> None:
    """Register a config/model pair under ``cfg_cls.architecture()``; duplicates are refused."""
    name = cfg_cls.architecture()
    if name in ARCHITECTURES:
        msg = f"SAE architecture {name!r} is already registered"
        raise ValueError(msg)
    if sae_cls.config_class is not cfg_cls:
        msg = f"{sae_cls.__name__}.config_class is not {cfg_cls.__name__}"
        raise ValueError(msg)
    ARCHITECTURES[name] = (cfg_cls, sae_cls)


def get_architecture(name: str) -> tuple[type[SAEConfig], type[SAE]]:
    """The ``(config class, model class)`` registered as ``name``."""
    _ensure_builtin()
    if name not in ARCHITECTURES:
        raise InputError(
            f"unknown SAE architecture {name!r}; use one of {sorted(ARCHITECTURES)}",
            record="sae.architecture",
        )
    return ARCHITECTURES[name]


def _ensure_builtin() -> None:
    # the built-in modules register themselves on import
    from genosae.sae import batchtopk, relu, topk  # noqa: F401


# --------------------------------------------------------------------------- sparse primitives
class _GatherPre(torch.autograd.Function):
    """``pre[rows, cols]`` of ``pre = (x - b_dec) @ W_enc + b_enc`` without a dense graph.

    The dense pre-activations are computed once without autograd; this gathers the selected
    entries. Backward needs one ``embedding_bag`` over the entries grouped by latent for ``W_enc``, a
    scatter-add for ``b_enc`` and a mat-vec for ``b_dec``; no ``[B, d_sae]`` activation graph (ReLU /
    TopK / scatter) is kept or differentiated.
    """

    @staticmethod
    def forward(ctx: Any, pre_BF: torch.Tensor, sae_in_BD: torch.Tensor, W_enc: torch.Tensor,
                b_enc: torch.Tensor, b_dec: torch.Tensor, rows_N: torch.Tensor,
                cols_N: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(sae_in_BD, W_enc, rows_N, cols_N)
        return pre_BF[rows_N, cols_N]

    @staticmethod
    def backward(ctx: Any, g_N: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        sae_in_BD, W_enc, rows_N, cols_N = ctx.saved_tensors
        d_sae = W_enc.shape[1]
        grad_W_enc = grad_b_enc = grad_b_dec = None
        g_F = torch.zeros(d_sae, dtype=g_N.dtype, device=g_N.device).index_add_(0, cols_N, g_N)
        if ctx.needs_input_grad[2]:
            # column f of grad_W_enc = sum of g_n * sae_in[row n] over the entries n of latent f: one
            # embedding_bag over the entries grouped by latent (measured 4x faster on CPU than scattering
            # into a dense [B, d_sae] for a GEMM, and than an index_add of the N x d_in contributions)
            order = torch.argsort(cols_N, stable=True)
            grad_W_enc = F.embedding_bag(rows_N[order], sae_in_BD, _bag_offsets(cols_N[order], d_sae), mode="sum",
                                         per_sample_weights=g_N[order].to(sae_in_BD.dtype)).T.contiguous()
        if ctx.needs_input_grad[3]:
            grad_b_enc = g_F
        if ctx.needs_input_grad[4]:
            grad_b_dec = -(W_enc @ g_F)
        return None, None, grad_W_enc, grad_b_enc, grad_b_dec, None, None


def _bag_offsets(rows_N: torch.Tensor, n_rows: int) -> torch.Tensor:
    """Start of each row's entries in row-sorted COO codes (``embedding_bag`` offsets)."""
    counts = torch.bincount(rows_N, minlength=n_rows)
    offsets = torch.zeros(n_rows, dtype=torch.long, device=rows_N.device)
    offsets[1:] = torch.cumsum(counts, 0)[:-1]
    return offsets


def sparse_decode(rows_N: torch.Tensor, cols_N: torch.Tensor, vals_N: torch.Tensor,
                  W_dec: torch.Tensor, n_rows: int) -> torch.Tensor:
    """``dense(rows, cols, vals) @ W_dec`` for row-sorted COO codes, via ``embedding_bag`` (its backward
    measured faster on CPU than two GEMMs or a gather)."""
    return F.embedding_bag(cols_N, W_dec, _bag_offsets(rows_N, n_rows), mode="sum", per_sample_weights=vals_N,
                           include_last_offset=False)


def to_dense(rows_N: torch.Tensor, cols_N: torch.Tensor, vals_N: torch.Tensor,
             shape: tuple[int, int]) -> torch.Tensor:
    """Dense ``[B, F]`` codes from COO triplets."""
    out = torch.zeros(shape, dtype=vals_N.dtype, device=vals_N.device)
    out[rows_N, cols_N] = vals_N
    return out


def geometric_median(x_ND: torch.Tensor, *, n_iter: int = 100, eps: float = 1e-6) -> torch.Tensor:
    """Weiszfeld's algorithm for the geometric median of the rows of ``x_ND``."""
    x = x_ND.double()
    med = x.mean(0)
    for _ in range(n_iter):
        w = 1.0 / torch.clamp(torch.linalg.vector_norm(x - med, dim=1), min=eps)
        new = (w[:, None] * x).sum(0) / w.sum()
        if torch.linalg.vector_norm(new - med) < eps * max(1.0, float(torch.linalg.vector_norm(med))):
            med = new
            break
        med = new
    return med.to(x_ND.dtype)


@dataclass
class ForwardOutput:
    """One training forward pass (normalised units)."""

    recon_BD: torch.Tensor
    rows_N: torch.Tensor
    cols_N: torch.Tensor
    vals_N: torch.Tensor
    pre_BF: torch.Tensor  # detached dense pre-activations
    sae_in_BD: torch.Tensor
    codes_BF: torch.Tensor | None = None  # dense codes with graph (dense architectures only)


# ----------------------------------------------------------------------------------------- model
class SAE(nn.Module):
    """Base sparse autoencoder (SAELens tensor names and shapes).

    Parameters are ``W_enc [d_in, d_sae]``, ``b_enc [d_sae]``, ``W_dec [d_sae, d_in]``, ``b_dec [d_in]``
    (normalised units); buffers ``act_mean [d_in]``, ``act_scale []`` (normalisation) and
    ``tokens_since_fired [d_sae]`` (dead-latent tracking). Subclasses implement :meth:`select`
    (training sparsity), :meth:`activation` (inference) and may add a sparsity penalty.
    """

    config_class: ClassVar[type[SAEConfig]] = SAEConfig
    #: renormalise decoder rows to unit norm after each step (gradient projected first)
    unit_norm_decoder: ClassVar[bool] = True
    #: SAELens architecture name this one is saved as
    saelens_architecture: ClassVar[str] = ""
    #: encoder rows start as this multiple of the (transposed) decoder rows
    encoder_init_ratio: ClassVar[float] = 1.0

    def __init__(self, cfg: SAEConfig, *, seed: int = 0) -> None:
        super().__init__()
        if not isinstance(cfg, self.config_class):
            msg = f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(cfg).__name__}"
            raise TypeError(msg)
        self.cfg = cfg
        gen = torch.Generator().manual_seed(seed)
        W_dec = torch.rand(cfg.d_sae, cfg.d_in, generator=gen) * 2 - 1
        W_dec = W_dec / torch.linalg.vector_norm(W_dec, dim=1, keepdim=True) * self.decoder_init_norm()
        self.W_dec = nn.Parameter(W_dec)
        self.W_enc = nn.Parameter((W_dec.T * self.encoder_init_ratio).contiguous())
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_sae))
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in))
        self.register_buffer("act_mean", torch.zeros(cfg.d_in))
        self.register_buffer("act_scale", torch.ones(()))
        self.register_buffer("tokens_since_fired", torch.zeros(cfg.d_sae, dtype=torch.long))

    @classmethod
    def architecture(cls) -> str:
        return cls.config_class.architecture()

    def decoder_init_norm(self) -> float:
        return 1.0

    @property
    def d_in(self) -> int:
        return self.cfg.d_in

    @property
    def d_sae(self) -> int:
        return self.cfg.d_sae

    # --------------------------------------------------------------- normalisation + outliers
    @torch.no_grad()
    def set_normalization(self, acts_ND: torch.Tensor) -> dict[str, float]:
        """Fit outlier threshold, mean and scale on a sample of raw activations.

        Returns a summary (``n_sample``, ``n_outliers``, ``median_norm``, ``outlier_norm_threshold``,
        ``act_scale``) that the trainer records.
        """
        x = acts_ND.double()
        norms = torch.linalg.vector_norm(x, dim=1)
        median = float(norms.median())
        keep = torch.ones_like(norms, dtype=torch.bool)
        if self.cfg.outlier_norm_factor is not None:
            self.cfg.outlier_norm_threshold = self.cfg.outlier_norm_factor * median
            keep = norms <= self.cfg.outlier_norm_threshold
        x = x[keep]
        mean = x.mean(0)
        msn = float((x - mean).pow(2).sum(1).mean())
        scale = math.sqrt(self.d_in / msn) if msn > 0 else 1.0
        self.act_mean.copy_(mean.to(self.act_mean.dtype))
        self.act_scale.fill_(scale)
        return {"n_sample": int(norms.numel()), "n_outliers": int((~keep).sum()),
                "median_norm": median, "outlier_norm_threshold": self.cfg.outlier_norm_threshold,
                "act_scale": scale}

    def inlier_mask(self, acts_BD: torch.Tensor) -> torch.Tensor:
        """Bool ``[B]``: tokens kept by the outlier rule (all True when there is no rule)."""
        thr = self.cfg.outlier_norm_threshold
        if thr is None:
            return torch.ones(acts_BD.shape[0], dtype=torch.bool, device=acts_BD.device)
        return torch.linalg.vector_norm(acts_BD.float(), dim=1) <= thr

    def normalize(self, acts_BD: torch.Tensor) -> torch.Tensor:
        return (acts_BD.to(self.W_enc.dtype) - self.act_mean) * self.act_scale

    def denormalize(self, x_BD: torch.Tensor) -> torch.Tensor:
        return x_BD / self.act_scale + self.act_mean

    @torch.no_grad()
    def init_b_dec(self, x_norm_ND: torch.Tensor) -> None:
        """Initialise the pre-encoder bias from normalised data (``cfg.b_dec_init``)."""
        if self.cfg.b_dec_init == "geometric_median":
            self.b_dec.copy_(geometric_median(x_norm_ND))
        elif self.cfg.b_dec_init == "mean":
            self.b_dec.copy_(x_norm_ND.mean(0))
        else:
            self.b_dec.zero_()

    # ------------------------------------------------------------------------------ inference
    def pre_acts(self, x_norm_BD: torch.Tensor) -> torch.Tensor:
        return (x_norm_BD - self.b_dec) @ self.W_enc + self.b_enc

    def activation(self, pre_BF: torch.Tensor) -> torch.Tensor:
        """Inference activation: dense codes from pre-activations."""
        raise NotImplementedError

    def encode(self, acts_BD: torch.Tensor) -> torch.Tensor:
        """Dense codes ``[B, d_sae]`` of raw model activations ``[..., d_in]``."""
        shape = acts_BD.shape
        codes = self.activation(self.pre_acts(self.normalize(acts_BD.reshape(-1, shape[-1]))))
        return codes.reshape(*shape[:-1], self.d_sae)

    def decode(self, codes_BF: torch.Tensor) -> torch.Tensor:
        """Reconstruction in model units of dense codes ``[..., d_sae]``."""
        return self.denormalize(codes_BF @ self.W_dec + self.b_dec)

    def forward(self, acts_BD: torch.Tensor) -> torch.Tensor:
        """Reconstruction (model units) of raw activations ``[..., d_in]``."""
        return self.decode(self.encode(acts_BD)).to(acts_BD.dtype)

    # ------------------------------------------------------------------------------- training
    def select(self, pre_BF: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training sparsity: row-sorted ``(rows_N, cols_N)`` of the active latents."""
        raise NotImplementedError

    def forward_train(self, x_norm_BD: torch.Tensor) -> ForwardOutput:
        """Sparse training forward pass on normalised inputs."""
        sae_in = x_norm_BD - self.b_dec.detach()
        with torch.no_grad():
            pre = torch.addmm(self.b_enc, sae_in, self.W_enc)
        rows, cols = self.select(pre)
        vals = _GatherPre.apply(pre, sae_in, self.W_enc, self.b_enc, self.b_dec, rows, cols)
        vals = F.relu(vals)
        recon = sparse_decode(rows, cols, vals, self.W_dec, x_norm_BD.shape[0]) + self.b_dec
        return ForwardOutput(recon, rows, cols, vals, pre, sae_in)

    def sparsity_loss(self, out: ForwardOutput, n_tokens: int, step_frac: float) -> torch.Tensor:
        """Extra sparsity penalty (none for TopK-style SAEs)."""
        return out.vals_N.new_zeros(())

    def aux_loss(self, x_norm_BD: torch.Tensor, out: ForwardOutput) -> torch.Tensor:
        """AuxK: the top ``aux_k`` dead latents reconstruct the residual (Gao et al. 2024, A.2)."""
        dead_F = self.dead_mask()
        n_dead = int(dead_F.sum())
        if n_dead == 0 or self.cfg.aux_coefficient == 0:
            return out.vals_N.new_zeros(())
        k_aux = min(self.cfg.effective_aux_k, n_dead)
        residual = (x_norm_BD - out.recon_BD).detach()
        masked = out.pre_BF.masked_fill(~dead_F[None], -torch.inf)
        idx_BK = row_topk(masked, k_aux)
        B = x_norm_BD.shape[0]
        rows = torch.arange(B, device=idx_BK.device).repeat_interleave(k_aux)
        cols = idx_BK.reshape(-1)
        # no ReLU here (as in Gao et al.'s code): a dead latent's pre-activation is usually
        # negative and must still receive a gradient
        vals = _GatherPre.apply(out.pre_BF, out.sae_in_BD, self.W_enc, self.b_enc, self.b_dec,
                                rows, cols)
        recon_aux = sparse_decode(rows, cols, vals, self.W_dec, B)
        denom = (residual - residual.mean(0)).pow(2).sum(1).mean().clamp(min=1e-12)
        loss = (recon_aux - residual).pow(2).sum(1).mean() / denom
        scale = min(n_dead / self.cfg.effective_aux_k, 1.0)
        return self.cfg.aux_coefficient * scale * loss

    def dead_mask(self) -> torch.Tensor:
        return self.tokens_since_fired >= self.cfg.dead_tokens_threshold

    @torch.no_grad()
    def update_firing(self, out: ForwardOutput, n_tokens: int) -> None:
        fired = torch.zeros(self.d_sae, dtype=torch.bool, device=out.cols_N.device)
        fired[out.cols_N[out.vals_N > 0]] = True
        self.tokens_since_fired += n_tokens
        self.tokens_since_fired[fired] = 0

    def after_step(self, out: ForwardOutput, step: int) -> None:
        """Per-step state update after the optimiser step (e.g. BatchTopK threshold)."""

    @torch.no_grad()
    def remove_parallel_grad(self) -> None:
        """Project out the decoder-row-parallel component of ``W_dec.grad``."""
        if self.unit_norm_decoder and self.W_dec.grad is not None:
            W = self.W_dec
            W.grad -= (W.grad * W).sum(1, keepdim=True) * W

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        if self.unit_norm_decoder:
            self.W_dec /= torch.linalg.vector_norm(self.W_dec, dim=1, keepdim=True).clamp(min=1e-12)

    # ------------------------------------------------------------------ SAELens export helpers
    def inference_state(self) -> dict[str, torch.Tensor]:
        """Weights with normalisation folded in (SAELens layout, raw model units).

        With ``x_norm = (x - mu) s``: ``W_enc' = s W_enc``, ``W_dec' = W_dec / s``,
        ``b_dec' = b_dec / s + mu``, ``b_enc' = b_enc`` gives identical codes and an identical
        reconstruction in model units.
        """
        s = self.act_scale.detach()
        return {
            "W_enc": (self.W_enc.detach() * s).contiguous(),
            "b_enc": self.b_enc.detach().clone(),
            "W_dec": (self.W_dec.detach() / s).contiguous(),
            "b_dec": (self.b_dec.detach() / s + self.act_mean).contiguous(),
        }

    @torch.no_grad()
    def load_inference_state(self, state: dict[str, torch.Tensor], act_mean: torch.Tensor,
                             act_scale: float) -> None:
        """Inverse of :meth:`inference_state` given the stored normalisation."""
        s = float(act_scale)
        self.act_mean.copy_(act_mean)
        self.act_scale.fill_(s)
        self.W_enc.copy_(state["W_enc"] / s)
        self.b_enc.copy_(state["b_enc"])
        self.W_dec.copy_(state["W_dec"] * s)
        self.b_dec.copy_((state["b_dec"] - act_mean) * s)

    def saelens_cfg(self) -> dict[str, Any]:
        """Architecture-specific SAELens config fields."""
        return {}
