"""Near-duplicate detection: 64-bit perceptual hashes, LSH by hash bands, and the keep rule.

Pure numpy (and Pillow for the thumbnail): the decode stage hashes every image from the pixels
it already decoded, the neardup stage and finalize group the hashes. Nothing here imports Ray.

- **pHash** (64 bits): the 32x32 grey thumbnail's 2-D DCT-II, its top-left 8x8 low frequencies
  thresholded at their median (the imagehash/pHash definition). Re-encodes, resizes and small
  crops move a few bits; different photos differ in ~32. **dHash** (64 bits, 9x8 gradients) is
  offered for tools; the pipeline stores pHash.
- **LSH by bands**: the 64 bits are split into ``bands`` contiguous bands; two hashes are
  candidates when one band is bit-identical (found by sorting the band values, never by
  comparing all pairs), and a candidate is a pair when its full Hamming distance is within the
  threshold. A pair at distance d < bands always shares a band (pigeonhole); farther pairs are
  found with a probability that ``tables`` (extra fixed bit permutations, each split into the
  same bands) raises. ``recall(d, bands, tables)`` gives the figure.
- **Keep rule** (``greedy_keep``): in input-index order, a sample is kept unless a kept sample
  with a lower index lies within the threshold; then it is dropped with that sample's id. A
  decision depends only on lower indices, and new inputs always get higher indices, so an
  incremental or resumed run never reverses an earlier decision, and no two kept samples are
  near-duplicates (so none straddle train and test, whatever the split of each id).
"""

from __future__ import annotations

import io
import itertools
from dataclasses import dataclass
from functools import lru_cache
from math import comb

import numpy as np
from PIL import Image

HASH_BITS = 64


@lru_cache(maxsize=1)
def _dct_rows() -> np.ndarray:
    """The first 8 rows of the orthonormal 32-point DCT-II matrix (8x32)."""
    n = 32
    k = np.arange(8)[:, None]
    x = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * x + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m.astype(np.float64)


def _bits_to_int(bits: np.ndarray) -> int:
    return int.from_bytes(np.packbits(bits.astype(np.uint8).ravel()).tobytes(), "big")


def thumbnail(img: Image.Image, size: tuple[int, int] = (32, 32)) -> np.ndarray:
    """Grey ``size`` thumbnail as float64: box-reduced first (cheap on big images), then bilinear."""
    if img.mode not in ("RGB", "L"):
        img = img.convert("RGB")
    small = img.resize(size, Image.BILINEAR, reducing_gap=2.0)
    return np.asarray(small.convert("L"), dtype=np.float64)


def phash_grey(grey32: np.ndarray) -> int:
    """pHash of a 32x32 grey array: low 8x8 DCT coefficients above their median."""
    d = _dct_rows()
    low = d @ grey32 @ d.T
    return _bits_to_int(low > np.median(low))


def phash(img: Image.Image) -> int:
    return phash_grey(thumbnail(img))


def phash_bytes(data: bytes) -> int:
    """pHash straight from encoded bytes; JPEGs decode at 1/8 scale (draft), so it stays cheap."""
    with Image.open(io.BytesIO(data)) as img:
        img.draft("L", (64, 64))  # JPEG only: DCT-domain downscale; other formats ignore it
        return phash(img)


def to_hex(h: int) -> str:
    return f"{h:016x}"


def from_hex(values: list[str] | np.ndarray) -> np.ndarray:
    """16-hex-digit strings -> uint64 array, in one pass (no per-row int())."""
    if len(values) == 0:
        return np.zeros(0, dtype=np.uint64)
    raw = bytes.fromhex("".join(values))
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.bitwise_count(np.bitwise_xor(a, b)).astype(np.int64)


# -- LSH -------------------------------------------------------------------------------------


def _band_masks(bands: int) -> list[tuple[int, np.uint64]]:
    """(shift, mask) of each contiguous band of the 64 bits."""
    edges = np.linspace(0, HASH_BITS, bands + 1).round().astype(int)
    return [(int(lo), np.uint64((1 << int(hi - lo)) - 1)) for lo, hi in itertools.pairwise(edges)]


@lru_cache(maxsize=8)
def _permutation(table: int) -> np.ndarray:
    """Table 0 is the identity; table t a fixed (seeded) permutation of the 64 bit positions."""
    if table == 0:
        return np.arange(HASH_BITS)
    return np.random.default_rng(1000 + table).permutation(HASH_BITS)


@lru_cache(maxsize=8)
def _permutation_lut(table: int) -> np.ndarray:
    """(8, 256) uint64: what each value of each input byte contributes to the permuted hash."""
    perm = _permutation(table)  # output bit k (from the most significant) takes input bit perm[k]
    lut = np.zeros((8, 256), dtype=np.uint64)
    values = np.arange(256, dtype=np.uint64)
    for out_bit, in_bit in enumerate(perm.tolist()):
        byte, bit_in_byte = divmod(in_bit, 8)  # byte 0 = most significant
        on = (values >> np.uint64(7 - bit_in_byte)) & np.uint64(1)
        lut[byte] |= on << np.uint64(63 - out_bit)
    return lut


def permute_bits(hashes: np.ndarray, table: int) -> np.ndarray:
    """The hashes with their bits permuted by table ``table``'s fixed permutation (8 table lookups)."""
    if table == 0:
        return hashes
    lut = _permutation_lut(table)
    out = np.zeros(len(hashes), dtype=np.uint64)
    for byte in range(8):
        out |= lut[byte][((hashes >> np.uint64(56 - 8 * byte)) & np.uint64(255)).astype(np.intp)]
    return out


def band_keys(hashes: np.ndarray, bands: int, tables: int):
    """Yield each (table, band)'s key array: candidates are equal keys. Keys use the narrowest
    unsigned type, so sorting them is a radix sort for bands of up to 16 bits."""
    for t in range(tables):
        permuted = permute_bits(hashes, t)
        for shift, mask in _band_masks(bands):
            keys = (permuted >> np.uint64(shift)) & mask
            width = int(mask).bit_length()
            yield keys.astype(np.uint8 if width <= 8 else np.uint16 if width <= 16 else np.uint32 if width <= 32 else np.uint64)


def _near_in_band(keys: np.ndarray, hashes: np.ndarray, max_distance: int):
    """Yield (a, b, distance) of pairs with equal ``keys`` and Hamming distance <= ``max_distance``.

    Sorting puts equal keys in runs; pairs at offset o inside a run are (i, i+o). Positions whose
    run continues at offset o are a subset of those at o-1, so the work is candidates + n, not
    n^2; candidates are verified on the hashes in sorted order (contiguous reads).
    """
    order = np.argsort(keys, kind="stable")
    ks = keys[order]
    hs = hashes[order]
    # Where each position's run of equal keys ends: a pair (i, i+o) is inside a run iff i+o < end[i].
    starts = np.flatnonzero(np.r_[True, ks[1:] != ks[:-1]])
    run_end = np.repeat(np.r_[starts[1:], len(ks)], np.diff(np.r_[starts, len(ks)]))
    active = np.flatnonzero(run_end - np.arange(len(ks)) > 1)
    h_active, end_active = hs[active], run_end[active]
    offset = 1
    while active.size:
        d = np.bitwise_count(h_active ^ hs[active + offset])
        ok = d <= max_distance
        if ok.any():
            yield order[active[ok]], order[active[ok] + offset], d[ok].astype(np.int64)
        offset += 1
        more = active + offset < end_active
        active, h_active, end_active = active[more], h_active[more], end_active[more]


def near_pairs(hashes: np.ndarray, max_distance: int, bands: int = 4, tables: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (i < j) of positions whose Hamming distance is <= ``max_distance``, found by LSH.

    Returns (i, j, distance) arrays, each pair once. Identical hashes are pairs at distance 0.
    """
    hashes = np.ascontiguousarray(hashes, dtype=np.uint64)
    found_i, found_j, found_d = [], [], []
    for keys in band_keys(hashes, bands, tables):
        for a, b, d in _near_in_band(keys, hashes, max_distance):
            found_i.append(np.minimum(a, b))
            found_j.append(np.maximum(a, b))
            found_d.append(d)
    if not found_i:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    i, j, d = np.concatenate(found_i), np.concatenate(found_j), np.concatenate(found_d)
    _, first = np.unique(i.astype(np.int64) * len(hashes) + j, return_index=True)
    return i[first].astype(np.int64), j[first].astype(np.int64), d[first]


def brute_force_pairs(hashes: np.ndarray, max_distance: int) -> set[tuple[int, int]]:
    """All pairs within ``max_distance`` by comparing every pair: the reference for tests."""
    hashes = np.asarray(hashes, dtype=np.uint64)
    out = set()
    for i in range(len(hashes)):
        d = hamming(hashes[i], hashes[i + 1 :])
        out.update((i, i + 1 + int(k)) for k in np.flatnonzero(d <= max_distance))
    return out


def recall(distance: int, bands: int, tables: int = 1) -> float:
    """Probability that a pair at ``distance`` (flipped bits uniformly placed) becomes a candidate."""
    widths = np.diff(np.linspace(0, HASH_BITS, bands + 1).round().astype(int))
    if len(set(widths.tolist())) != 1:
        widths = np.full(bands, HASH_BITS // bands)  # close enough for a figure
    w = int(widths[0])
    p = sum((-1) ** (k + 1) * comb(bands, k) * comb(HASH_BITS - k * w, distance) for k in range(1, bands + 1)) / comb(HASH_BITS, distance)
    return 1 - (1 - min(1.0, p)) ** tables


# -- the keep rule ---------------------------------------------------------------------------


@dataclass
class Decision:
    """Per input position: kept, or dropped for ``keep`` (a kept position) at ``distance``."""

    kept: np.ndarray  # bool
    keep: np.ndarray  # int64, -1 where kept
    distance: np.ndarray  # int64, -1 where kept


def greedy_keep(hashes: np.ndarray, order_key: np.ndarray, max_distance: int, bands: int = 4, tables: int = 1) -> Decision:
    """In ``order_key`` order (the input index), keep a sample unless a kept one before it is within
    ``max_distance``; a dropped one names the nearest such kept sample (lowest order on ties).

    Identical hashes collapse first (a blank-image bucket of 10k would be 50M pairs); the LSH and
    the Python loop then see only distinct hashes that have a near neighbour, which are few.
    """
    n = len(hashes)
    kept = np.ones(n, dtype=bool)
    keep = np.full(n, -1, dtype=np.int64)
    dist = np.full(n, -1, dtype=np.int64)
    if n == 0:
        return Decision(kept, keep, dist)
    by_order = np.argsort(order_key, kind="stable")
    h_sorted = np.asarray(hashes, dtype=np.uint64)[by_order]
    uniq, first, inverse = np.unique(h_sorted, return_index=True, return_inverse=True)
    rep_pos = by_order[first]  # the earliest sample of each distinct hash
    rep_order = first  # its rank in input order
    i, j, d = near_pairs(uniq, max_distance, bands, tables)

    rep_kept = np.ones(len(uniq), dtype=bool)
    rep_keep = np.full(len(uniq), -1, dtype=np.int64)  # a kept rep
    rep_dist = np.zeros(len(uniq), dtype=np.int64)
    if len(i):
        # Orient each edge from the earlier rep to the later one, then visit later reps in order.
        early = np.where(rep_order[i] < rep_order[j], i, j)
        late = np.where(rep_order[i] < rep_order[j], j, i)
        sort = np.lexsort((rep_order[early], rep_order[late]))
        early, late, d = early[sort], late[sort], d[sort]
        starts = np.flatnonzero(np.r_[True, late[1:] != late[:-1]])
        ends = np.r_[starts[1:], len(late)]
        for s, e in zip(starts.tolist(), ends.tolist()):
            cands = early[s:e]
            alive = rep_kept[cands]
            if alive.any():
                c, cd = cands[alive], d[s:e][alive]
                best = np.lexsort((rep_order[c], cd))[0]
                r = late[s]
                rep_kept[r], rep_keep[r], rep_dist[r] = False, c[best], cd[best]

    # Members: the earliest of a hash follows its rep; later ones drop for the rep's keeper.
    is_first = np.zeros(n, dtype=bool)
    is_first[first] = True
    rep_of = inverse.ravel()
    rk = rep_kept[rep_of]
    target = np.where(rk, rep_pos[rep_of], rep_pos[np.maximum(rep_keep[rep_of], 0)])
    tdist = np.where(rk, 0, rep_dist[rep_of])
    sample_kept = is_first & rk
    kept[by_order] = sample_kept
    keep[by_order] = np.where(sample_kept, -1, target)
    dist[by_order] = np.where(sample_kept, -1, tdist)
    return Decision(kept, keep, dist)


# -- a persistent index to query new hashes against ------------------------------------------


class HashIndex:
    """Hashes of kept samples (an earlier run's), sorted per LSH band, to look new hashes up in.

    ``nearest`` finds, for each query, the nearest indexed hash within the threshold among the
    query's band candidates (lowest ``order_key`` on ties): the same candidates ``near_pairs``
    would produce for that pair, so a decision made here agrees with the finalize pass.
    """

    def __init__(self, hashes: np.ndarray, order_key: np.ndarray, bands: int, tables: int):
        self.hashes = np.ascontiguousarray(hashes, dtype=np.uint64)
        self.order_key = np.asarray(order_key, dtype=np.int64)
        self.bands, self.tables = bands, tables
        self.sorted = []
        for keys in band_keys(self.hashes, bands, tables):
            order = np.argsort(keys, kind="stable")
            self.sorted.append((keys[order], order.astype(np.int32 if len(keys) < 2**31 else np.int64)))

    def __len__(self) -> int:
        return len(self.hashes)

    def nearest(self, queries: np.ndarray, max_distance: int) -> tuple[np.ndarray, np.ndarray]:
        """(position in the index or -1, distance or -1) per query."""
        queries = np.ascontiguousarray(queries, dtype=np.uint64)
        best = np.full(len(queries), -1, dtype=np.int64)
        best_d = np.full(len(queries), HASH_BITS + 1, dtype=np.int64)
        if not len(self) or not len(queries):
            return best, np.full(len(queries), -1, dtype=np.int64)
        for (keys, order), qkeys in zip(self.sorted, band_keys(queries, self.bands, self.tables)):
            lo = np.searchsorted(keys, qkeys, "left")
            hi = np.searchsorted(keys, qkeys, "right")
            counts = hi - lo
            if not counts.sum():
                continue
            q = np.repeat(np.arange(len(queries)), counts)
            pos = order[np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts) + np.repeat(lo, counts)]
            d = hamming(queries[q], self.hashes[pos])
            ok = d <= max_distance
            for qi, p, dist in zip(q[ok].tolist(), pos[ok].tolist(), d[ok].tolist()):
                if (dist, self.order_key[p]) < (best_d[qi], self.order_key[best[qi]] if best[qi] >= 0 else np.iinfo(np.int64).max):
                    best[qi], best_d[qi] = p, dist
        best_d[best < 0] = -1
        return best, best_d
