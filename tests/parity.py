"""Parity helpers: tiny random Transformers models, built once per run, compared under each backend.

``hf_reference(name, build_model, inputs)`` builds the torch model (seeded), ``save_pretrained``s
it and records its outputs on ``inputs``, into a cache folder shared by the three backend runs
(env KM_TEST_CACHE, default <repo>/.cache/test_refs). The cache key hashes the builder's source
and the inputs, so editing a test module rebuilds its references.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("KM_TEST_CACHE", REPO / ".cache" / "test_refs"))


def cached_folder(key: str, build) -> Path:
    """Return CACHE/key, calling ``build(tmp_folder)`` first if it is not there yet."""
    final = CACHE / key
    if (final / ".complete").exists():
        return final
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=CACHE, prefix=f".{key}."))
    try:
        build(tmp)
        (tmp / ".complete").write_text("ok")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _key(name, *parts):
    h = hashlib.sha1()
    for p in parts:
        h.update(p if isinstance(p, bytes) else repr(p).encode())
    return f"{name}-{h.hexdigest()[:10]}"


def _outputs_to_numpy(out):
    """Pick the comparable tensors of a Transformers ModelOutput."""
    result = {}
    for k in ("logits", "start_logits", "end_logits", "last_hidden_state", "encoder_last_hidden_state",
              "pooler_output", "relevance_logits"):
        v = getattr(out, k, None) if not isinstance(out, dict) else out.get(k)
        if v is not None:
            result[k] = v.detach().float().numpy()
    hidden = getattr(out, "hidden_states", None) if not isinstance(out, dict) else out.get("hidden_states")
    if "last_hidden_state" not in result and hidden is not None:  # (DPR: output_hidden_states=True)
        result["last_hidden_state"] = hidden[-1].detach().float().numpy()
    return result


def hf_reference(name, build_model, inputs: dict, extra_save=None, seed=0):
    """Build (once) a tiny HF model and its outputs.

    build_model(): returns a transformers PreTrainedModel (called after torch.manual_seed(seed)).
    inputs: dict of numpy int arrays (HF names). extra_save(folder, model): optional hook to add
    files (tokenizer, sentence-transformers config...).
    Returns (model_folder: Path, expected: dict of numpy arrays).
    """
    # The whole defining module's source: editing a test's configs rebuilds its references.
    src = inspect.getsource(inspect.getmodule(build_model))
    key = _key(name, src, seed, {k: np.asarray(v).tobytes() for k, v in sorted(inputs.items())})

    def build(tmp):
        import torch

        torch.manual_seed(seed)
        model = build_model().eval()
        # Random init leaves some parameters at exactly 0/1 (biases, norms); perturb every float
        # parameter so that a mis-mapped tensor cannot hide behind a default value.
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.02)
        model.save_pretrained(tmp / "model")
        if extra_save is not None:
            extra_save(tmp / "model", model)
        with torch.no_grad():
            out = model(**{k: torch.tensor(v) for k, v in inputs.items()})
        np.savez(tmp / "expected.npz", **_outputs_to_numpy(out))

    folder = cached_folder(key, build)
    expected = dict(np.load(folder / "expected.npz"))
    return folder / "model", expected


def to_numpy(x):
    import keras

    if isinstance(x, dict):
        return {k: to_numpy(v) for k, v in x.items()}
    return keras.ops.convert_to_numpy(x)


def assert_close(actual, expected, atol=1e-4, mask=None, what=""):
    actual = np.asarray(to_numpy(actual), dtype=np.float32)
    expected = np.asarray(expected, dtype=np.float32)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    diff = np.abs(actual - expected)
    if mask is not None:
        m = np.asarray(mask).astype(bool)
        diff = diff[m] if diff.ndim == m.ndim else diff[m[..., None].repeat(diff.shape[-1], -1)]
    worst = float(diff.max()) if diff.size else 0.0
    assert worst <= atol, f"{what}: max abs diff {worst:.3g} > {atol}"
    return worst


def text_inputs(batch=2, seq=9, vocab=99, pad_id=0, pad_last=3, token_types=True, seed=0, low=3):
    """Random ids with the last row right-padded by ``pad_last`` tokens."""
    rng = np.random.RandomState(seed)
    ids = rng.randint(low, vocab, size=(batch, seq)).astype("int64")
    mask = np.ones_like(ids)
    if pad_last:
        ids[-1, seq - pad_last :] = pad_id
        mask[-1, seq - pad_last :] = 0
    out = {"input_ids": ids, "attention_mask": mask}
    if token_types:
        tt = np.zeros_like(ids)
        tt[:, seq // 2 :] = 1
        out["token_type_ids"] = tt * mask
    return out


def json_dump(path, data):
    Path(path).write_text(json.dumps(data))


def assert_keras_round_trip(model, inputs, folder, atol=1e-6):
    """``model.save`` to ``folder``/m.keras and ``keras.saving.load_model``: the same class, the same
    backbone config (every switch) and the same outputs on ``inputs``."""
    import keras

    before = keras.tree.flatten(model(inputs))
    model.save(folder / "m.keras")
    restored = keras.saving.load_model(folder / "m.keras")
    assert type(restored) is type(model)
    bb, rbb = getattr(model, "backbone", model), getattr(restored, "backbone", restored)
    drop = ("name", "dtype")
    assert {k: v for k, v in rbb.get_config().items() if k not in drop} == {
        k: v for k, v in bb.get_config().items() if k not in drop}
    for a, b in zip(before, keras.tree.flatten(restored(inputs))):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(b), keras.ops.convert_to_numpy(a), atol=atol)
    return restored
