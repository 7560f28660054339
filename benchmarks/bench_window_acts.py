"""Cohort profiles from per-window aggregates streamed from the store vs from token-level codes.

Each path runs in a fresh process (so its peak RSS is its own): (a) token level —
``feature_activations`` (all tokens' sparse codes in memory) then sample and locus profiles;
(b) streamed — ``window_activations`` (only ``n_windows × d_sae`` aggregates) then the same profiles.
Prints seconds, peak RSS and their ratios, and the largest difference between the two results.

Run after `make demo`:
python benchmarks/bench_window_acts.py [--store results/embed/cohort/store] [--sae results/sae/seed0]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import time

import numpy as np


def run(path: str, store_dir: str, sae_dir: str, windows_file: str, queue: mp.Queue) -> None:
    from genosae.biomarkers import locus_profiles, region_profiles
    from genosae.features.activations import feature_activations, window_activations
    from genosae.model.store import ActivationStore, read_windows_table
    from genosae.sae.io import load_sae

    sae, store = load_sae(sae_dir), ActivationStore(store_dir)
    windows = read_windows_table(windows_file)
    t0 = time.perf_counter()
    if path == "token":
        fa = feature_activations(sae, store)
        acts, tokens, names = fa.codes, fa.tokens, fa.feature_names
    else:
        acts = window_activations(sae, store, progress=False)
        tokens, names = None, acts.feature_names
    samples = region_profiles(acts, tokens, windows, unit="sample_id", feature_names=names)
    loci = locus_profiles(acts, tokens, windows, feature_names=names)
    seconds = time.perf_counter() - t0
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put((seconds, rss_mib, samples.layers["mean"], np.nan_to_num(loci.mean)))


def measure(path: str, args: argparse.Namespace) -> tuple:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=run, args=(path, args.store, args.sae, args.windows, q))
    p.start()
    out = q.get()
    p.join()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default="results/embed/cohort/store")
    ap.add_argument("--sae", default="results/sae/seed0")
    ap.add_argument("--windows", default="results/windows/cohort.windows.tsv")
    args = ap.parse_args()
    t_tok, rss_tok, s_tok, l_tok = measure("token", args)
    t_win, rss_win, s_win, l_win = measure("window", args)
    print(f"token-level codes : {t_tok:7.1f} s, peak RSS {rss_tok:7.0f} MiB")
    print(f"window aggregates : {t_win:7.1f} s, peak RSS {rss_win:7.0f} MiB")
    print(f"ratio (token / window): time {t_tok / t_win:.2f}x, memory {rss_tok / rss_win:.2f}x")
    print(f"max |difference|: sample profiles {np.abs(s_tok - s_win).max():.2e}, "
          f"locus profiles {np.abs(l_tok - l_win).max():.2e}")


if __name__ == "__main__":
    main()
