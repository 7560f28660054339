"""Train SAELens's and EleutherAI sparsify's TopK SAEs and ours on the same activations; compare speed
and quality in one run (CPU, or ``--device cuda``).

Both see the same batches (same order) with the same width, k, batch size, token budget, Adam
settings, LR schedule and grad clipping. SAELens is driven exactly like its ``SAETrainer`` step
(``training_forward_pass`` -> firing counts -> backward -> clip 1.0 -> Adam) without the LM /
activation-store machinery; its input is pre-scaled to ``E||x||^2 = d_in`` (its
``expected_average_only_in`` normalisation) and its ``b_dec`` starts at the data mean (SAELens 6
has no data-dependent init; this only helps it), ours normalises inside. sparsify's ``SparseCoder`` is
driven like its ``Trainer`` with ``loss_fn="fvu"`` (``b_dec`` = the first batch's mean, unit-norm decoder
rows each step, gradient parallel to them removed, the FVU as the loss), with torch Adam at the same
learning rate and schedule (its own default LR rule and 8-bit Adam would change two things at once).
Ours runs twice: with its numba row top-k (:mod:`genosae.sae.kernels`) and with ``torch.topk``.
Quality is measured on held-out tokens: FVU (scale-free), L0 and the fraction of latents that never fire.

Usage::

    python benchmarks/bench_sae_vs_saelens.py                 # synthetic d=192
    python benchmarks/bench_sae_vs_saelens.py --store results/model/atlas.store --tokens 1000000

Data without ``--store``: ``x = mu + sum_j c_j f_j + noise`` with 4096 random unit features, ~24
active per token with exponential magnitudes and a Zipf-like feature frequency (structured, so a
TopK SAE has something to find).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def synthetic_pool(n: int, d: int = 192, n_feats: int = 4096, active: int = 24,
                   seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    feats = torch.randn(n_feats, d, generator=gen)
    feats /= feats.norm(dim=1, keepdim=True)
    freq = 1.0 / torch.arange(1, n_feats + 1).float() ** 0.7
    idx = torch.multinomial(freq.expand(n, -1), active, replacement=False, generator=gen)
    mag = torch.empty(n, active).exponential_(1.0, generator=gen)
    x = torch.zeros(n, d)
    x.index_add_(0, torch.arange(n).repeat_interleave(active),
                 (mag.reshape(-1, 1) * feats[idx.reshape(-1)]))
    return x + 2.0 * torch.randn(d, generator=gen) + 0.05 * torch.randn(n, d, generator=gen)


def store_pool(path: str, n: int, seed: int) -> torch.Tensor:
    from genosae.model.store import ActivationStore
    from genosae.sae.train import sample_tokens

    return sample_tokens(ActivationStore(path), n, seed=seed)


def quality(encode, decode, x: torch.Tensor) -> dict[str, float]:
    with torch.no_grad():
        codes = encode(x)
        recon = decode(codes)
        fvu = float((recon - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum())
        active = codes != 0
        return {"fvu": fvu, "l0": float(active.sum(1).float().mean()),
                "dead_frac": float((active.sum(0) == 0).float().mean())}


def run_ours(train: torch.Tensor, held: torch.Tensor, args) -> dict:
    from genosae.sae import SAETrainConfig, SAETrainer
    from genosae.sae.topk import TopKSAE

    cfg = SAETrainConfig(architecture="topk", d_sae=args.d_sae, k=args.k,
                         batch_size=args.batch_size, lr=args.lr, training_tokens=args.tokens,
                         seed=args.seed)
    sae = TopKSAE(cfg.sae_config(train.shape[1]), seed=args.seed)
    sae.set_normalization(train[:65536])
    sae.init_b_dec(sae.normalize(train[:8192]))
    trainer = SAETrainer(sae, cfg)
    n_steps = cfg.n_steps
    t0 = time.perf_counter()
    for step in range(n_steps):
        trainer.update(step, _batch(train, step, args.batch_size))
    dt = time.perf_counter() - t0
    sae.eval()
    return {"tokens_per_s": n_steps * args.batch_size / dt, "seconds": dt,
            **quality(sae.encode, sae.decode, held)}


def run_saelens(train: torch.Tensor, held: torch.Tensor, args, *, sparse: bool) -> dict:
    from sae_lens.saes.sae import TrainStepInput
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig

    from genosae.sae.train import lr_factor

    torch.manual_seed(args.seed)
    d = train.shape[1]
    scale = float((d / train[:65536].pow(2).sum(1).mean()).sqrt())
    sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=d, d_sae=args.d_sae, k=args.k,
                                                use_sparse_activations=sparse))
    with torch.no_grad():  # SAELens 6 leaves b_dec at 0; give it the data mean (helps it)
        sae.b_dec.copy_(train[:8192].mean(0) * scale)
    opt = torch.optim.Adam(sae.parameters(), lr=args.lr, betas=(0.9, 0.999))
    since_fired = torch.zeros(args.d_sae)
    dead_window = max(1, 1_000_000 // args.batch_size)  # same 1M-token rule as ours
    n_steps = -(-args.tokens // args.batch_size)
    t0 = time.perf_counter()
    for step in range(n_steps):
        for g in opt.param_groups:
            g["lr"] = args.lr * lr_factor(step, n_steps, 0.05, 0.2)
        x = _batch(train, step, args.batch_size) * scale
        sae.train()
        out = sae.training_forward_pass(TrainStepInput(
            sae_in=x, coefficients={}, dead_neuron_mask=since_fired > dead_window,
            n_training_steps=step, is_logging_step=False))
        with torch.no_grad():
            did_fire = out.feature_acts.bool().float().sum(-2).bool()
            if did_fire.is_sparse:
                did_fire = did_fire.to_dense()
            since_fired += 1
            since_fired[did_fire] = 0
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(sae.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
    dt = time.perf_counter() - t0
    sae.eval()

    def enc(x):
        z = sae.encode(x * scale)
        return z.to_dense() if z.is_sparse else z

    return {"tokens_per_s": n_steps * args.batch_size / dt, "seconds": dt,
            **quality(enc, lambda z: sae.decode(z) / scale, held)}


def run_sparsify(train: torch.Tensor, held: torch.Tensor, args) -> dict:
    from sparsify import SparseCoder, SparseCoderConfig

    from genosae.sae.train import lr_factor

    torch.manual_seed(args.seed)
    d = train.shape[1]
    sae = SparseCoder(d, SparseCoderConfig(activation="topk", num_latents=args.d_sae, k=args.k), device="cpu")
    opt = torch.optim.Adam(sae.parameters(), lr=args.lr, betas=(0.9, 0.999))
    since_fired = torch.zeros(args.d_sae)
    n_steps = -(-args.tokens // args.batch_size)
    t0 = time.perf_counter()
    for step in range(n_steps):
        for g in opt.param_groups:
            g["lr"] = args.lr * lr_factor(step, n_steps, 0.05, 0.2)
        x = _batch(train, step, args.batch_size)
        if step == 0:
            sae.b_dec.data = x.mean(0)
        sae.set_decoder_norm_to_unit_norm()
        out = sae(x)
        out.fvu.backward()
        sae.remove_gradient_parallel_to_decoder_directions()
        opt.step()
        opt.zero_grad()
        with torch.no_grad():
            since_fired += x.shape[0]
            since_fired[out.latent_indices.flatten()] = 0
    dt = time.perf_counter() - t0
    sae.eval()

    def enc(x):
        top_acts, top_idx, _ = sae.encode(x)
        return torch.zeros(x.shape[0], args.d_sae).scatter_(1, top_idx, top_acts)

    def dec(z):
        vals, idx = z.topk(args.k, dim=1)
        return sae.decode(vals, idx)

    return {"tokens_per_s": n_steps * args.batch_size / dt, "seconds": dt, **quality(enc, dec, held)}


def _batch(pool: torch.Tensor, step: int, batch_size: int) -> torch.Tensor:
    n = pool.shape[0] // batch_size
    i = step % n
    return pool[i * batch_size:(i + 1) * batch_size]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", default=None)
    p.add_argument("--tokens", type=int, default=400_000, help="training token budget")
    p.add_argument("--pool", type=int, default=200_000, help="distinct training tokens held in memory")
    p.add_argument("--held", type=int, default=16_384)
    p.add_argument("--expansion", type=int, default=8)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--lr", type=float, default=4e-4)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    n = args.pool + args.held
    data = store_pool(args.store, n, args.seed) if args.store else synthetic_pool(n, seed=args.seed)
    perm = torch.from_numpy(np.random.default_rng(args.seed).permutation(data.shape[0]))
    data = data[perm]
    train, held = data[: -args.held], data[-args.held:]
    args.d_sae = args.expansion * data.shape[1]
    print(f"d_in={data.shape[1]} d_sae={args.d_sae} k={args.k} batch={args.batch_size} "
          f"tokens={args.tokens} threads={torch.get_num_threads()}")
    res = {"genosae": run_ours(train, held, args)}
    from genosae.sae import kernels

    kernels.ENABLED = False  # the same trainer with torch.topk for the TopK selection: the kernel's share
    try:
        res["genosae_torch_topk"] = run_ours(train, held, args)
    finally:
        kernels.ENABLED = True
    try:
        res["saelens"] = run_saelens(train, held, args, sparse=False)
    except ImportError:
        print("sae_lens is not installed: pip install sae-lens")
    else:
        try:  # its sparse-activation mode; may not support CPU backward
            res["saelens_sparse"] = run_saelens(train, held, args, sparse=True)
        except (NotImplementedError, RuntimeError) as err:
            print(f"SAELens use_sparse_activations=True failed: {str(err).splitlines()[0]}")
    try:
        res["sparsify"] = run_sparsify(train, held, args)
    except ImportError:
        print("sparsify is not installed: pip install eai-sparsify")
    print(f"{'':20}{'tokens/s':>12}{'FVU':>9}{'L0':>8}{'dead':>8}")
    for name, r in res.items():
        print(f"{name:20}{r['tokens_per_s']:>12,.0f}{r['fvu']:>9.4f}{r['l0']:>8.1f}"
              f"{r['dead_frac']:>8.3f}")
    for other in ("genosae_torch_topk", "saelens", "saelens_sparse", "sparsify"):
        if other in res:
            print(f"speed-up vs {other}: "
                  f"{res['genosae']['tokens_per_s'] / res[other]['tokens_per_s']:.2f}x")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "results": res}, fh, indent=2)


if __name__ == "__main__":
    main()
