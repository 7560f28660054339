"""Multiple-testing correction: the one Benjamini–Hochberg of genosae (scipy underneath)."""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
from scipy import stats as sst

#: How :func:`benjamini_hochberg` treats a NaN p-value: ``"omit"`` — not a hypothesis (q NaN, not
#: counted); ``"one"`` — a hypothesis with p = 1 (counted, q computed as for p = 1).
NanPolicy = Literal["omit", "one"]


def benjamini_hochberg(p: np.ndarray, *, axis: int = -1, tested: np.ndarray | None = None,
                       nan: NanPolicy = "omit") -> np.ndarray:
    """Benjamini–Hochberg q-values along ``axis`` (``scipy.stats.false_discovery_control``).

    Parameters
    ----------
    p
        p-values (at least 1-D); each 1-D slice along ``axis`` is one family.
    axis
        Axis of the hypotheses of a family.
    tested
        Bool, broadcastable to ``p``: hypotheses left out of the family get ``q = 1`` and do not
        count in the number of tests (a label-independent filter, e.g. features whose values are
        all equal, keeps FDR control while power grows: Bourgon et al. 2010, PNAS).
    nan
        NaN p-values: ``"omit"`` (q NaN, not counted) or ``"one"`` (counted as p = 1).

    Returns
    -------
    float64 array of ``p``'s shape.
    """
    if nan not in get_args(NanPolicy):
        msg = f"nan must be one of {get_args(NanPolicy)}, got {nan!r}"
        raise ValueError(msg)
    p = np.asarray(p, dtype=np.float64)
    if p.size == 0:
        return p.copy()
    missing = np.isnan(p)
    keep = np.broadcast_to(np.ones((), bool) if tested is None else np.asarray(tested, bool), p.shape)
    if nan == "omit":
        keep = keep & ~missing
    p_r = np.moveaxis(np.where(missing, 1.0, p), axis, -1)
    rows_p = p_r.reshape(-1, p_r.shape[-1])
    rows_k = np.moveaxis(keep, axis, -1).reshape(rows_p.shape)
    rows_q = np.ones_like(rows_p)
    if (rows_k == rows_k[:1]).all():  # the same family in every row: one vectorised call
        m = rows_k[0]
        if m.any():
            rows_q[:, m] = sst.false_discovery_control(rows_p[:, m], axis=-1, method="bh")
    else:
        for i in range(rows_p.shape[0]):  # one call per family (the rows differ in what is tested)
            m = rows_k[i]
            if m.any():
                rows_q[i, m] = sst.false_discovery_control(rows_p[i, m], method="bh")
    q = np.moveaxis(rows_q.reshape(p_r.shape), -1, axis)
    return np.where(missing, np.nan, q) if nan == "omit" else q
