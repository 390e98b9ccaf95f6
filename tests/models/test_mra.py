"""MRA: backbone and heads against Transformers' MRA whose CUDA kernels (``index_max``,
``mm_to_sparse``, ``sparse_dense_mm``; absent on CPU, where its attention returns zeros) are
replaced by the torch stand-in of tests/models/mra_kernel_standin.py, written from the kernels'
source. The stand-in itself is checked against dense products and, with every block pair
selected, against exact softmax attention. Head size 64 and 8 selected blocks (of 16): inside the
kernels' defined domain (see the stand-in's docstring)."""

import numpy as np
import pytest

import keras_models as km
from tests.models import mra_kernel_standin as standin
from tests.models.test_encoders import STD, SUFFIX, check_parity
from tests.parity import assert_close, hf_reference, jit_under_jax, text_inputs, to_numpy

SEQ = 128
# 128 positions -> 4 block rows; block_per_row=2 -> 8 of the 16 block pairs of a 128-token input
BASE = dict(vocab_size=99, hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
            max_position_embeddings=128, block_per_row=2, pad_token_id=1)
CONFIGS = {
    "full": (dict(BASE), STD),
    # the sparse mode (high resolution only), both priors, relu
    "sparse_priors": (dict(BASE, approx_mode="sparse", initial_prior_first_n_blocks=1,
                           initial_prior_diagonal_n_blocks=3, hidden_act="relu", layer_norm_eps=1e-6,
                           num_hidden_layers=1),
                      ("Backbone",)),
    # the full mode with the diagonal prior, 2 token types
    "full_diagonal": (dict(BASE, initial_prior_diagonal_n_blocks=2, type_vocab_size=2, hidden_act="gelu_new",
                           num_hidden_layers=1),
                      ("Backbone",)),
}
CASES = [(name, task) for name, (_, tasks) in CONFIGS.items() for task in tasks]


def _inputs(name):
    # both rows end in 20 padding tokens (their last block is partly padding). Transformers tiles
    # the (batch, seq) mask over heads batch-first ("repeat(1, heads, 1)") while its queries are
    # (batch, heads)-ordered, so with rows padded differently head h of row i reads row
    # (i * heads + h) % batch's mask; with equal masks it is exact (see test_rows_are_independent)
    inputs = text_inputs(seq=SEQ, pad_id=1, pad_last=0, token_types=CONFIGS[name][0].get("type_vocab_size", 1) > 1)
    inputs["input_ids"][:, -20:] = 1
    for k in ("attention_mask", "token_type_ids"):
        if k in inputs:
            inputs[k][:, -20:] = 0
    return inputs


def _ref(name, task):
    inputs = _inputs(name)

    def build():
        import transformers

        standin.install()  # Transformers' attention runs on the kernel stand-in
        cfg = transformers.MraConfig(**CONFIGS[name][0], num_labels=2 if task == "QuestionAnswerer" else 3)
        return getattr(transformers, "Mra" + SUFFIX[task])(cfg)

    folder, expected = hf_reference(f"mra-{name}-{task}", build, inputs)
    return folder, inputs, expected


@pytest.mark.one_case_per_pass("task")
@pytest.mark.parametrize("name,task", CASES)
def test_parity(name, task):
    folder, inputs, expected = _ref(name, task)
    assert np.abs(expected["last_hidden_state"]).max() > 0
    if name != "full":  # backbone only, compiled under jax (eager jax costs ~3x more here)
        model = km.Backbone.from_preset(folder)
        out = jit_under_jax(lambda x: model(x))(inputs)
        assert_close(out, expected["last_hidden_state"], mask=inputs["attention_mask"], what=f"mra {name}")
        return
    check_parity("Mra", f"mra {name}", task, folder, inputs, expected)


def test_rows_are_independent():
    """Each row attends with its own mask: a batch of rows padded differently gives each row's
    batch-of-one output (Transformers' tiling differs here, see _inputs)."""
    folder, inputs, expected = _ref("full", "Backbone")
    model = km.Backbone.from_preset(folder)
    mixed = {k: v.copy() for k, v in inputs.items()}
    mixed["input_ids"][0, -20:] = inputs["input_ids"][1, :20]
    mixed["attention_mask"][0, -20:] = 1
    run = jit_under_jax(lambda x: model(x))
    both = to_numpy(run(mixed))
    assert_close(both[1:], expected["last_hidden_state"][1:], mask=inputs["attention_mask"][1:], what="row 1")
    alone = to_numpy(run({k: v[:1] for k, v in mixed.items()}))
    assert_close(both[:1], alone, atol=1e-5, what="row 0")


def test_bad_inputs_and_config(tmp_path):
    folder, inputs, _ = _ref("full", "Backbone")
    model = km.Backbone.from_preset(folder)
    with pytest.raises(ValueError, match="multiple of 32"):
        model({k: v[:, :40] for k, v in inputs.items()})
    with pytest.raises(ValueError, match="block pairs"):  # 64 tokens: 4 pairs < 8 selected
        model({k: v[:, :64] for k, v in inputs.items()})
    import json
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    cfg = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps(dict(cfg, approx_mode="dense")))
    with pytest.raises(km.errors.ConfigError, match="approx_mode"):
        km.Backbone.from_preset(bad)


# --- the stand-in, checked on its own (torch only) ---------------------------------------------

def _rand(*shape, seed=0):
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g)


def _blocked(x):  # (b, t, d) -> (b, t / 32, d, 32), the kernels' layout
    b, t, d = x.shape
    return x.reshape(b, t // 32, 32, d).transpose(-1, -2).contiguous()


@pytest.mark.backend_independent
def test_standin_products_against_dense():
    import torch

    b, t, d, nb = 2, 96, 64, 3
    q, k, v = _rand(b, t, d, seed=1), _rand(b, t, d, seed=2), _rand(b, t, d, seed=3)
    indices = torch.stack([torch.randperm(nb * nb, generator=torch.Generator().manual_seed(s))[:8]
                           for s in range(b)]).int()
    dense = q @ k.transpose(-1, -2)  # (b, queries, keys)
    sparse = standin.mm_to_sparse(_blocked(q), _blocked(k), indices)
    for bi in range(b):
        for c in range(8):
            i, j = divmod(int(indices[bi, c]), nb)
            want = dense[bi, i * 32:(i + 1) * 32, j * 32:(j + 1) * 32].T  # [key, query]
            torch.testing.assert_close(sparse[bi, c], want, rtol=0, atol=1e-4)
    # sparse @ dense: densify the selected blocks (as a queries x keys matrix), then multiply
    weights = _rand(b, 8, 32, 32, seed=4)
    full = torch.zeros(b, t, t)
    for bi in range(b):
        for c in range(8):
            i, j = divmod(int(indices[bi, c]), nb)
            full[bi, i * 32:(i + 1) * 32, j * 32:(j + 1) * 32] += weights[bi, c].T
    got = standin.sparse_dense_mm(weights, indices, _blocked(v), nb)  # (b, nb, d, 32)
    torch.testing.assert_close(got.transpose(-1, -2).reshape(b, t, d), full @ v, rtol=0, atol=1e-4)
    # index_max: per query row, the max over its selected blocks, truncated to 1e-3; rows without a
    # selected block get -1e5
    vals = _rand(b, 32, 8, seed=5) * 3
    max_vals, scattered = standin.index_max(vals, indices, nb, nb)
    for bi in range(b):
        for row in range(nb * 32):
            blk, pos = divmod(row, 32)
            mine = [float(vals[bi, pos, c]) for c in range(8) if int(indices[bi, c]) // nb == blk]
            want = max(int(x * 1000) for x in mine) / 1000 if mine else -1e5
            assert abs(float(max_vals[bi, row]) - want) < 1e-6
    for bi in range(b):
        for c in range(8):
            blk = int(indices[bi, c]) // nb
            torch.testing.assert_close(scattered[bi, :, c], max_vals[bi, blk * 32:(blk + 1) * 32])
    with pytest.raises(NotImplementedError, match="multiple of 64"):
        standin.sparse_dense_mm(weights, indices, _blocked(v)[:, :, :32], nb)


@pytest.mark.backend_independent
def test_standin_every_block_is_softmax_attention():
    """Sparse mode selecting every block pair is exact softmax attention (padding masked)."""
    import torch
    from transformers.models.mra import modeling_mra

    standin.install()
    b, h, t, d = 1, 2, 128, 64
    q, k, v = (_rand(b, h, t, d, seed=s) for s in (6, 7, 8))
    mask = torch.ones(b * h, t)
    mask[:, 100:] = 0
    out = modeling_mra.mra2_attention(q, k, v, mask, 16, "sparse").reshape(b * h, t, d)
    qf, kf, vf = (x.reshape(b * h, t, d) for x in (q, k, v))
    scores = qf @ kf.transpose(-1, -2) / d**0.5 - 1e9 * (1 - mask[:, None, :])
    want = torch.softmax(scores, -1) @ vf * mask[..., None]
    torch.testing.assert_close(out, want, rtol=0, atol=1e-5)
