"""Parity helpers: tiny random Transformers models, built once per run, compared under each backend.

``hf_reference(name, build_model, inputs)`` builds the torch model (seeded), re-initialises its
weights so that activations are O(1) (:func:`randomize_weights`: Transformers' default init, std
0.02, leaves attention nearly uniform and outputs ~0.05, where a missing switch moves them by less
than the tolerance), ``save_pretrained``s it and records its outputs on ``inputs`` -- for a task
model also its base model's last hidden state -- into a cache folder shared by the three backend
runs (env KM_TEST_CACHE, default <repo>/.cache/test_refs). The cache key hashes the builder's
module, the module calling it (through the vision helper: that helper and its caller), this
module, the ``tests.*`` modules those import from, the installed Transformers and torch versions
and the inputs, so editing a test or a helper rebuilds its references.

:func:`assert_close` scales its default tolerance (1e-4) by the outputs' magnitude;
:func:`assert_backbone_close` compares a task model's backbone output with the recorded hidden
state; :func:`assert_close_low_precision` is the bf16 / int8 check (relative, and failing for
outputs that carry no signal).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import sys
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
        if final.exists() and not (final / ".complete").exists():
            shutil.rmtree(final, ignore_errors=True)  # a folder left by an older layout
        try:
            os.replace(tmp, final)
        except OSError:
            # another process (tools/test.sh runs the torch pass in shards) finished the same
            # reference first and may be reading it: keep theirs, never replace a complete folder
            if not (final / ".complete").exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _key(name, *parts):
    h = hashlib.sha1()
    for p in parts:
        h.update(p if isinstance(p, bytes) else repr(p).encode())
    return f"{name}-{h.hexdigest()[:10]}"


def _versions():
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for pkg in ("transformers", "torch"):
        try:
            out.append(f"{pkg}=={version(pkg)}")
        except PackageNotFoundError:
            out.append(f"{pkg} missing")
    return out


# Helper modules that call hf_reference for a test module: the key covers them and their caller.
HELPERS = ("tests.vision.vision_parity",)


def _test_modules(build_model):
    """Names of the ``tests.*`` modules a reference depends on: this one, the builder's module, the
    module calling hf_reference (through helpers such as the vision one: the helper and its caller)
    and the ``tests.*`` modules those import names from."""
    names = {__name__}
    mod = inspect.getmodule(build_model)
    if mod is not None:
        names.add(mod.__name__)
    frame = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__") == __name__:
        frame = frame.f_back  # up to hf_reference's caller
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        names.add(name)
        if name not in HELPERS:
            break
        frame = frame.f_back
    for name in [n for n in names if n in sys.modules]:
        for value in vars(sys.modules[name]).values():
            dep = value.__name__ if inspect.ismodule(value) else getattr(value, "__module__", None)
            if isinstance(dep, str) and dep.startswith("tests.") and dep in sys.modules:
                names.add(dep)
    return sorted(n for n in names if n.startswith("tests.") and n in sys.modules)


def _sources(build_model):
    return [(n, inspect.getsource(sys.modules[n])) for n in _test_modules(build_model)]


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


# --- reference weights ---------------------------------------------------------------------------
SCALE_NOISE = 0.2  # 1-D parameters (norm scales, biases, layer scales): init + 0.2 * N(0, 1)


def _weight_rule(module, name, p):
    """(std, rule) of a parameter's fresh N(0, std) values, or (None, "1d") for one that is moved
    off its init instead: 1/sqrt(fan_in) for kernels, 1 for tables (embeddings, position and bias
    tables, class tokens)."""
    import torch
    from transformers.pytorch_utils import Conv1D

    if name == "weight":
        if isinstance(module, torch.nn.Embedding):
            return 1.0, "embedding"
        if isinstance(module, torch.nn.Linear):
            return p.shape[1] ** -0.5, "linear"
        if isinstance(module, Conv1D):  # GPT-2 style (in, out)
            return p.shape[0] ** -0.5, "conv1d"
        if isinstance(module, torch.nn.modules.conv._ConvTransposeNd):
            fan_in = p.shape[0] * int(np.prod(p.shape[2:])) / max(1, int(np.prod(module.stride)))
            return max(fan_in, 1) ** -0.5, "conv_transpose"
        if isinstance(module, torch.nn.modules.conv._ConvNd):
            return int(np.prod(p.shape[1:])) ** -0.5, "conv"
    if sum(d > 1 for d in p.shape) <= 1:  # norm scales, biases, layer scales, (heads, 1, 1) scales
        return None, "1d"
    if p.ndim == 3 and type(module).__name__.endswith("Experts"):  # (experts, out, in) for F.linear
        return p.shape[-1] ** -0.5, "experts"
    return 1.0, "table"


def randomize_weights(model, seed=0, log=None):
    """Re-initialise every float parameter of a torch model so that activations are O(1):
    kernels N(0, 1/fan_in) (Linear, GPT-2 Conv1D, convolutions by in_channels * kernel area, 3-D
    expert stacks), embeddings and other tables N(0, 1), and vectors (norm scales, biases, layer
    scales) moved off their init by ``SCALE_NOISE * N(0, 1)`` (norm scales ~1 +- 0.2, biases
    ~+-0.2), so that a mis-mapped tensor cannot hide behind a default value. ``log`` (a list)
    receives the rule applied to each parameter."""
    import torch

    g = torch.Generator().manual_seed(seed + 12345)
    seen = set()
    with torch.no_grad():
        for mname, module in model.named_modules():
            for name, p in module.named_parameters(recurse=False):
                if id(p) in seen or not p.is_floating_point():
                    continue
                seen.add(id(p))
                noise = torch.randn(p.shape, generator=g, dtype=torch.float32).to(p.dtype)
                std, rule = _weight_rule(module, name, p)
                if std is None:
                    p.add_(noise * SCALE_NOISE)
                else:
                    p.copy_(noise * std)
                if log is not None:
                    log.append((f"{mname}.{name}".lstrip("."), type(module).__name__, tuple(p.shape), rule))
    return model


def calibrate_batch_norms(model, inputs):
    """Running statistics of every BatchNorm measured on ``inputs`` (torch tensors; the rest of the
    model in eval mode), so that the re-initialised network keeps unit-scale activations; running
    variances are floored at half their mean (a near-constant channel would amplify rounding)."""
    import torch

    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return model
    model.eval()
    saved = []
    for bn in bns:
        saved.append(bn.momentum)
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average: exactly the batch statistics
        bn.train()
    with torch.no_grad():
        model(**inputs)
        for bn, momentum in zip(bns, saved):
            bn.running_var.clamp_(min=float(bn.running_var.mean()) * 0.5)
            bn.momentum = momentum
    return model.eval()


def _base_models(model):
    """Modules whose output's last_hidden_state is the task model's backbone output: its base model
    (``model.base_model``) or, for heads that call the base model's decoder directly (OPT), that."""
    import torch

    base = getattr(model, "base_model", model)
    if base is model:
        return []
    return [base] + [m for m in [getattr(base, "decoder", None)] if isinstance(m, torch.nn.Module)]


def hf_reference(name, build_model, inputs: dict, extra_save=None, seed=0):
    """Build (once) a tiny HF model and its outputs.

    build_model(): returns a transformers PreTrainedModel (called after torch.manual_seed(seed)).
    Its weights are then re-initialised (:func:`randomize_weights`) and BatchNorm statistics
    measured on ``inputs`` (:func:`calibrate_batch_norms`).
    inputs: dict of numpy int arrays (HF names). extra_save(folder, model): optional hook to add
    files (tokenizer, sentence-transformers config...).
    Returns (model_folder: Path, expected: dict of numpy arrays). Besides the model's own outputs
    (logits, start/end logits, last_hidden_state, encoder_last_hidden_state), a task model's
    ``expected["last_hidden_state"]`` is its base model's (``model.base_model``) last hidden state
    in the same forward pass.
    """
    key = _key(name, _sources(build_model), _versions(), seed,
               {k: np.asarray(v).tobytes() for k, v in sorted(inputs.items())})

    def build(tmp):
        import torch

        torch.manual_seed(seed)
        model = build_model().eval()
        rules = []
        randomize_weights(model, seed, log=rules)
        tensors = {k: torch.tensor(v) for k, v in inputs.items()}
        calibrate_batch_norms(model, tensors)
        model.save_pretrained(tmp / "model")
        if extra_save is not None:
            extra_save(tmp / "model", model)
        captured = {}
        hooks = [m.register_forward_hook(lambda m, a, out, i=i: captured.setdefault(i, out))
                 for i, m in enumerate(_base_models(model))]
        with torch.no_grad():
            out = model(**tensors)
        for hook in hooks:
            hook.remove()
        expected = _outputs_to_numpy(out)
        if "last_hidden_state" not in expected and captured:
            hidden = _outputs_to_numpy(captured[min(captured)]).get("last_hidden_state")
            if hidden is not None:
                expected["last_hidden_state"] = hidden
        for k, v in expected.items():
            assert np.isfinite(v).all(), f"{name}: non-finite reference {k}"
        np.savez(tmp / "expected.npz", **expected)
        if os.environ.get("KM_REF_LOG"):  # diagnostics: output sizes and the generic "table" rules
            with open(os.environ["KM_REF_LOG"], "a") as f:
                f.write(json.dumps({"name": name, "max": {k: float(np.abs(v).max()) for k, v in expected.items()},
                                    "std": {k: float(v.std()) for k, v in expected.items()},
                                    "tables": [r[:3] for r in rules if r[3] in ("table", "experts")]}) + "\n")

    folder = cached_folder(key, build)
    expected = dict(np.load(folder / "expected.npz"))
    return folder / "model", expected


def jit_under_jax(fn):
    """``fn`` under jax.jit on the JAX backend (a decode loop's step compiled once instead of
    dispatched op by op, and proof that it traces); unchanged elsewhere."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return jax.jit(fn)
    return fn


def to_numpy(x):
    import keras

    if isinstance(x, dict):
        return {k: to_numpy(v) for k, v in x.items()}
    return keras.ops.convert_to_numpy(x)


def _masked(x, mask):
    if mask is None:
        return x.reshape(-1)
    m = np.asarray(mask).astype(bool)
    return x[m] if x.ndim == m.ndim else x[m[..., None].repeat(x.shape[-1], -1)]


FP32_TOL = 1e-4
FILL = 1e8  # |values| from here on are mask fills, not signal


def assert_close(actual, expected, atol=None, mask=None, what=""):
    """Max |actual - expected| (over ``mask``'s positions) within ``atol``; by default
    ``1e-4 * max(1, max|expected|)``, fp32 round-off that grows with the outputs' magnitude."""
    actual = np.asarray(to_numpy(actual), dtype=np.float32)
    expected = np.asarray(expected, dtype=np.float32)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    diff = _masked(np.abs(actual - expected), mask)
    worst = float(diff.max()) if diff.size else 0.0
    if atol is None:
        want = _masked(np.abs(expected), mask)
        want = want[want < FILL]  # not the -finfo.max / -1e9 fills of masked-out logits
        scale = max(1.0, float(want.max()) if want.size else 0.0)
        atol = FP32_TOL * scale
        tol = f"{atol:.3g} (1e-4 x scale {scale:.3g})"
    else:
        tol = f"{atol}"
    assert worst <= atol, f"{what}: max abs diff {worst:.3g} > {tol}"
    return worst


def assert_close_low_precision(actual, expected, rel, what="", mask=None):
    """A reduced-precision (bf16, int8) output against the fp32 reference: max error within
    ``rel * max|expected|``, rms error under a tenth of the reference's spread (std) and
    correlation above 0.99 -- so all-zero or constant outputs fail whatever the outputs' size."""
    a = _masked(np.asarray(to_numpy(actual), dtype=np.float64), mask)
    e = _masked(np.asarray(expected, dtype=np.float64), mask)
    assert a.shape == e.shape, f"{what}: shape {a.shape} != {e.shape}"
    scale, spread = float(np.abs(e).max()), float(e.std())
    assert spread > 0, f"{what}: the reference is constant"
    err = float(np.abs(a - e).max())
    rms = float(np.sqrt(np.mean((a - e) ** 2)))
    corr = float(np.corrcoef(a, e)[0, 1]) if a.std() > 0 else 0.0
    detail = f"max err {err:.3g} (scale {scale:.3g}), rms {rms:.3g} (spread {spread:.3g}), corr {corr:.4f}"
    assert err <= rel * scale and rms <= 0.1 * spread and corr > 0.99, f"{what}: {detail}"
    return detail


def backbone_hidden(model, inputs):
    """The backbone's output of a task model (its last hidden state; the decoder's for an
    encoder-decoder), as numpy."""
    backbone = getattr(model, "backbone", model)
    out = backbone(inputs)
    if isinstance(out, dict):
        out = out["last_hidden_state"]
    return to_numpy(out)


def assert_backbone_close(model, inputs, expected, mask=None, what="", hidden=None, tol=1.0):
    """A task model's backbone output against the reference's base-model last hidden state
    (recorded by hf_reference): a head that reads few numbers (a class, a span) can hide a wrong
    layer below it. ``hidden``: the backbone output if already computed (else it is run on
    ``inputs``). Channels-first reference maps are compared channels_last."""
    if "last_hidden_state" not in expected:
        return None
    want = expected["last_hidden_state"]
    got = backbone_hidden(model, inputs) if hidden is None else np.asarray(to_numpy(hidden))
    if want.ndim == 4 and got.shape != want.shape and got.shape == want.transpose(0, 2, 3, 1).shape:
        want = want.transpose(0, 2, 3, 1)
    if mask is not None and np.shape(mask) != got.shape[:np.ndim(mask)]:
        mask = None  # a pooled sequence (Funnel's base model): every position is compared
    atol = None if tol == 1.0 else tol * FP32_TOL * max(1.0, float(np.abs(want).max()))
    return assert_close(got, want, atol=atol, mask=mask, what=f"{what} backbone hidden state".strip())


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
