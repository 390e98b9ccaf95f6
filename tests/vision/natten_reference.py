"""A brute-force torch stand-in for the NATTEN functions Transformers' NAT / DiNAT call
(``natten2dqkrpb``, ``natten2dav`` of NATTEN <= 0.14; PyPI's NATTEN 0.21 no longer has them and
ships no CPU kernels), used to run the reference models in tests/vision/test_dinat.py.

Written from NATTEN's documented semantics, not from our Keras layer: the full (H*W) x (H*W)
query-key product is computed and a boolean neighborhood mask picks each query's k*k keys. Along
each axis with dilation d a query at position i belongs to the group i % d; within its group
(positions g, g+d, ...; n of them) at index t it sees the group indices s..s+k-1 with
s = clip(t - k//2, 0, n - k) (the window slides inward at the borders), and the key at group
index u gets the bias rpb[head, u - t + k - 1] (2-D: one offset per axis). Scores are returned in
NATTEN's layout (batch, heads, H, W, k*k), the k*k keys in row-major window order.

Checked against NATTEN itself by tests/vision/test_dinat.py::test_reference_against_natten when
``natten`` is importable: 0.14's natten2dqkrpb / natten2dav (bias included), or 0.21's
``na2d`` (no bias: the neighborhoods and dilation groups).
"""

import torch


def _window_mask(length, kernel_size, dilation):
    """(length, length) bool: key j is in query i's window (one axis), and (length, length) int
    relative offsets u - t + k - 1 (meaningful where the mask is set, clipped to the table elsewhere)."""
    i = torch.arange(length)
    group, t = i % dilation, i // dilation
    size = (length - group + dilation - 1) // dilation
    start = torch.minimum(torch.clamp(t - kernel_size // 2, min=0), size - kernel_size)
    same_group = group[:, None] == group[None, :]
    u = t[None, :].expand(length, length)  # group index of every key j
    inside = (u >= start[:, None]) & (u < start[:, None] + kernel_size)
    return same_group & inside, (u - t[:, None] + kernel_size - 1).clamp(0, 2 * kernel_size - 2)


def _neighbours(query_shape, kernel_size, dilation):
    """(mask (H, W, H, W) bool, bias offsets (H, W, H, W, 2))."""
    h, w = query_shape
    if h < kernel_size * dilation or w < kernel_size * dilation:
        raise ValueError(f"input {h}x{w} smaller than kernel_size {kernel_size} x dilation {dilation}")
    mh, oh = _window_mask(h, kernel_size, dilation)
    mw, ow = _window_mask(w, kernel_size, dilation)
    mask = mh[:, None, :, None] & mw[None, :, None, :]
    offsets = torch.stack(torch.broadcast_tensors(oh[:, None, :, None], ow[None, :, None, :]), dim=-1)
    return mask, offsets


def natten2dqkrpb(query, key, rpb, kernel_size, dilation):
    """query, key: (batch, heads, H, W, d); rpb (heads, 2k-1, 2k-1) or None ->
    (batch, heads, H, W, k*k) scores q.k + bias of each query's neighbourhood."""
    b, heads, h, w, _ = query.shape
    mask, offsets = _neighbours((h, w), kernel_size, dilation)
    full = torch.einsum("bnijc,bnklc->bnijkl", query, key)
    if rpb is not None:
        full = full + rpb[:, offsets[..., 0], offsets[..., 1]][None]
    kk = kernel_size * kernel_size
    picked = full[:, :, mask]  # the masked keys in row-major order per query: (b, heads, H*W*kk)
    return picked.reshape(b, heads, h, w, kk)


def natten2dav(attention, value, kernel_size, dilation):
    """attention (batch, heads, H, W, k*k) in natten2dqkrpb's layout, value (batch, heads, H, W, d)
    -> (batch, heads, H, W, d)."""
    b, heads, h, w, _ = value.shape
    mask, _ = _neighbours((h, w), kernel_size, dilation)
    full = attention.new_zeros(b, heads, h, w, h, w)
    full[:, :, mask] = attention.reshape(b, heads, -1)
    return torch.einsum("bnijkl,bnklc->bnijc", full, value)


def heads_first(fn):
    """The function for Transformers 5's DiNAT: it hands NATTEN q / k / v as
    (batch, W, H, heads, d) (``view(batch, H, W, heads, d).transpose(1, 2)``, a refactor's slip from
    the (batch, heads, H, W, d) that NAT, the original DiNAT code and NATTEN use; 4.57's version
    does not run at all on 4-D maps), so they are permuted back to NATTEN's layout first."""

    def wrapped(first, second, *args):
        if fn is natten2dqkrpb:
            first = first.permute(0, 3, 2, 1, 4)
        return fn(first, second.permute(0, 3, 2, 1, 4), *args)

    return wrapped
