"""A brute-force torch stand-in for the three CUDA ops Transformers' MRA attention calls
(``mra_cuda_kernel.index_max``, ``mm_to_sparse``, ``sparse_dense_mm``), written from their source
(Transformers 4.57.1, transformers/kernels/mra/cuda_kernel.cu + cuda_launch.cu). Without it,
Transformers' ``mra2_attention`` returns zeros on CPU. Never run against the CUDA kernels here (no
GPU); checked by tests/models/test_mra.py::test_standin_* against dense products worked out
independently and, with every block pair selected, against exact softmax attention.

Layouts, as the kernels read and write them (``b`` = batch * heads, ``n`` = selected blocks,
``indices[b, n] = query_block * B_num_block + key_block``):

- ``dense_A`` / ``dense_B``: (b, blocks, dim, 32) -- each 32-token block transposed.
- ``sparse`` blocks: (b, n, 32, 32) indexed ``[key token, query token]`` (mm_to_sparse writes
  ``C[(key) * 32 + query]``).
- ``index_vals``: (b, 32, n); ``max_vals``: (b, A_num_block * 32).

Only the configurations on which the kernels are defined are accepted (otherwise an error): the
launches cover ``num_block // 4`` (mm_to_sparse) / ``num_block // 2`` (sparse_dense_mm) groups;
index_max's loops run whole multiples of 256 threads over ``32 * num_block`` values without a
bound check (num_block a multiple of 8); sparse_dense_mm copies 64 features at a time (dim a
multiple of 64). Real checkpoints (head size 64, 64 / 1024 blocks) are inside that domain.
"""

import torch

BLOCK = 32


def _require(ok, what):
    if not ok:
        raise NotImplementedError(f"MRA kernel stand-in: {what} (the CUDA kernel is not defined there)")


def index_max(index_vals, indices, A_num_block, B_num_block):
    b, rows, n = index_vals.shape
    _require(rows == BLOCK and n % 8 == 0, f"num_block={n} is not a multiple of 8")
    # atomicMax over int(1000 * value) (C's truncation toward zero), buffer initialised to int(-1e8)
    scaled = torch.trunc(index_vals.float() * 1000).to(torch.int64)
    query_block = indices.long() // B_num_block  # (b, n)
    slot = query_block[:, None, :] * BLOCK + torch.arange(BLOCK)[None, :, None]  # (b, 32, n)
    buffer = torch.full((b, A_num_block * BLOCK), -100000000, dtype=torch.int64)
    for bi in range(b):
        for r in range(BLOCK):
            for c in range(n):
                s = int(slot[bi, r, c])
                buffer[bi, s] = max(int(buffer[bi, s]), int(scaled[bi, r, c]))
    max_vals = (buffer.double() / 1000.0).float()
    max_vals_scatter = torch.gather(max_vals, 1, slot.reshape(b, -1)).reshape(b, BLOCK, n)
    return [max_vals, max_vals_scatter]


def mm_to_sparse(dense_A, dense_B, indices):
    b, _, dim, width = dense_A.shape
    n = indices.shape[1]
    B_num_block = dense_B.shape[1]
    _require(width == BLOCK and dense_B.shape[3] == BLOCK, "blocks are not 32 wide")
    _require(dim % 16 == 0, f"dim={dim} is not a multiple of 16")
    out = torch.zeros(b, n, BLOCK, BLOCK, dtype=dense_A.dtype)
    for bi in range(b):
        for c in range((n // 4) * 4):  # the launch covers num_block // 4 groups of 4
            ab = int(indices[bi, c])
            a = dense_A[bi, ab // B_num_block]  # (dim, 32 queries)
            k = dense_B[bi, ab % B_num_block]  # (dim, 32 keys)
            out[bi, c] = k.T @ a  # [key, query]
    return out


def sparse_dense_mm(sparse_A, indices, dense_B, A_num_block):
    b, n = indices.shape
    B_num_block, dim = dense_B.shape[1], dense_B.shape[2]
    _require(dim % 64 == 0, f"dim={dim} is not a multiple of 64")
    out = torch.zeros(b, A_num_block, dim, BLOCK, dtype=dense_B.dtype)
    for bi in range(b):
        for c in range((n // 2) * 2):  # the launch covers num_block // 2 groups of 2
            ab = int(indices[bi, c])
            # C[query block][feature, query] += sum over keys of B[key block][feature, key] * A[key, query]
            out[bi, ab // B_num_block] += dense_B[bi, ab % B_num_block] @ sparse_A[bi, c]
    return out


class _Kernel:
    index_max = staticmethod(index_max)
    mm_to_sparse = staticmethod(mm_to_sparse)
    sparse_dense_mm = staticmethod(sparse_dense_mm)


KERNEL = _Kernel()


def install():
    """Make Transformers' MRA attention run on the stand-in (for this process)."""
    from transformers.models.mra import modeling_mra

    modeling_mra.mra_cuda_kernel = KERNEL
