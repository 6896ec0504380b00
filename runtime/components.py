"""Connected components of binary masks in pure numpy: the post-processing of a predicted volume.

Runs on the device next to the model, where scipy is not installed. Both operations follow
scipy.ndimage's defaults (face connectivity: 4 in 2D, 6 in 3D), which is the data set author's
protocol for the largest component (medpy's largest_connected_component) and
binary_fill_holes' definition of a hole; the tests hold them to scipy's results.
"""

from __future__ import annotations

import numpy as np


def _face_edges(mask: np.ndarray, index: np.ndarray, axes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (lower, higher) of foreground indices that share a face along one of `axes`."""
    src, dst = [], []
    for axis in axes:
        lo = tuple(slice(None, -1) if d == axis else slice(None) for d in range(mask.ndim))
        hi = tuple(slice(1, None) if d == axis else slice(None) for d in range(mask.ndim))
        both = mask[lo] & mask[hi]
        src.append(index[lo][both])
        dst.append(index[hi][both])
    return np.concatenate(src), np.concatenate(dst)


def _component_roots(n: int, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Root (smallest member index) of each of ``n`` nodes' connected component.

    Vectorised union-find: every round hooks the larger root of each edge onto
    the smaller one, then pointer-jumps until every node points at its root.
    Parents always have smaller indices, so the forest stays acyclic whichever
    of several competing writes wins; the number of trees roughly halves per
    round, so a handful of rounds suffices even for large volumes.
    """
    parent = np.arange(n, dtype=np.intp)
    while True:
        a, b = parent[src], parent[dst]
        cross = a != b
        if not cross.any():
            return parent
        a, b = a[cross], b[cross]
        parent[np.maximum(a, b)] = np.minimum(a, b)
        while True:
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped


def _roots(mask: np.ndarray, axes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Each foreground element's component root (connected along `axes`) and the index array used."""
    n = int(np.count_nonzero(mask))
    index = np.full(mask.shape, -1, dtype=np.intp)
    index[mask] = np.arange(n, dtype=np.intp)
    return _component_roots(n, *_face_edges(mask, index, axes)), index


def largest_component(mask: np.ndarray) -> np.ndarray:
    """Keep only the largest face-connected component of a binary mask (bool out).

    Only foreground voxels are processed, so a 256x256x88 volume is fast.
    Equally large components: the one whose first voxel comes first in C
    order wins, which is scipy's lowest label, so results are deterministic.
    Empty in, empty out.
    """
    mask = np.asarray(mask).astype(bool, copy=False)
    out = np.zeros(mask.shape, dtype=bool)
    if not mask.any():
        return out
    roots, _ = _roots(mask, tuple(range(mask.ndim)))
    # Roots are each component's first voxel in C order and argmax takes the
    # first maximum, which gives the tie rule above.
    out[mask] = roots == np.argmax(np.bincount(roots))
    return out


def fill_holes_2d(mask: np.ndarray) -> np.ndarray:
    """Each slice of a (slices, H, W) mask with its enclosed holes filled (bool out).

    A hole is background that no 4-connected path of background joins to the slice's edge:
    scipy.ndimage.binary_fill_holes applied to every slice on its own. Slice by slice, because
    a tumour's dark cystic or necrotic core is enclosed in plane, while between slices it
    opens where the tumour ends. Only the box around the foreground is searched (padded by
    one pixel of background, the outside), so the cost follows the tumour, not the scan.
    """
    mask = np.asarray(mask).astype(bool, copy=False)
    if mask.ndim != 3:
        raise ValueError(f"expected (slices, H, W), got {mask.shape}")
    out = mask.copy()
    if not mask.any():
        return out
    rows = np.flatnonzero(mask.any(axis=(0, 2)))
    cols = np.flatnonzero(mask.any(axis=(0, 1)))
    box = (slice(None), slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    background = ~np.pad(mask[box], ((0, 0), (1, 1), (1, 1)))
    roots, index = _roots(background, (1, 2))
    # The padded corner of every slice is background and outside.
    outside = np.isin(roots, roots[index[:, 0, 0]])
    filled = np.zeros(background.shape, dtype=bool)
    filled[background] = ~outside
    out[box] |= filled[:, 1:-1, 1:-1]
    return out
