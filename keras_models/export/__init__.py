"""Export a model for serving outside Python training code.

* ``export_onnx(model, path)``: an ONNX graph with dynamic batch (and, for token inputs, sequence)
  axes, through PyTorch's ``torch.export``-based exporter. It runs under the torch backend: a preset
  loads the same weights on every backend, so export from ``KERAS_BACKEND=torch``. (Keras' own
  ``export(format="onnx")`` uses the TorchScript tracer for dynamic shapes, which fails on Keras'
  LayerNormalization; under TensorFlow it goes through tf2onnx, which emits ops ONNX Runtime
  rejects for Keras' GELU.)
* ``export_onnx_decoder(causal_lm, path, max_length)`` (or ``export(path, format="onnx",
  max_length=...)``): the decode step with its KV cache as inputs and outputs, for a generation
  loop outside Python (see the function).
* ``input_signature(model)``: the model's inputs as ``keras.InputSpec``s (batch and sequence axes
  left open), which ``model.export(..., format="tf_saved_model")`` uses by default under JAX and
  TensorFlow.
* ``model.export(path, format="tf_saved_model", raw_strings=True)``: a SavedModel whose serving
  signature takes raw strings ``(batch,)``, the (WordPiece) tokenizer re-expressed in TensorFlow /
  tensorflow_text ops (extra ``keras-models[tf-serving]``; see ``keras_models/export/raw_text.py``).

``Task.export`` / ``Backbone.export`` route ``format="onnx"`` here and fill the input signature for
the other formats. The file appears only when the export succeeded (written beside it, then moved).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from keras_models.errors import InputError, KerasModelsError


class ExportError(KerasModelsError, RuntimeError):
    """The model cannot be exported in the requested format (names the format and the fix)."""


def sample_inputs(model, inputs=None):
    """A sample batch for tracing: ``inputs`` (a dict of arrays) or the model's dummy inputs,
    widened to batch 2 and, for token inputs, 8 positions (a size-1 axis cannot be left dynamic)."""
    if inputs is not None:
        if not isinstance(inputs, dict) or not inputs:
            raise InputError(f"export: inputs must be a dict of arrays (the model's input names), got "
                             f"{type(inputs).__name__}")
        return {k: np.asarray(v) for k, v in inputs.items()}
    backbone = getattr(model, "backbone", model)
    dummy = {k: np.asarray(v) for k, v in backbone.dummy_inputs().items()}
    preprocessor = getattr(model, "preprocessor", None)
    if preprocessor is not None and hasattr(preprocessor, "tokenizer") and hasattr(preprocessor, "features"):
        # serve what the tokenizer gives (token_type_ids for BERT-like models, ...), same layout
        try:
            features = preprocessor.features(["hello world", "a"])
        except Exception:  # a preprocessor wanting other raw input (pairs with images, ...)
            features = {}
        for name, value in features.items():
            value = np.asarray(value)
            if name not in dummy and _is_sequence(value):
                dummy[name] = np.zeros((1, 2) + value.shape[2:], value.dtype)
    out = {}
    for name, value in dummy.items():
        reps = [2 if value.shape[0] == 1 else 1] + [1] * (value.ndim - 1)
        value = np.tile(value, reps)
        if _is_sequence(value) and value.shape[1] < 8:
            value = np.concatenate([value] + [value[:, -1:]] * (8 - value.shape[1]), axis=1)
        out[name] = value
    return out


def _is_sequence(value):
    return value.dtype.kind in "iub" and value.ndim >= 2


def input_signature(model, inputs=None):
    """``[{name: keras.InputSpec}]`` for ``model.export``: batch axes open, and the sequence axis
    of integer (token) inputs."""
    import keras

    sample = sample_inputs(model, inputs)
    spec = {}
    for name, value in sample.items():
        shape = (None,) + ((None,) + value.shape[2:] if _is_sequence(value) else value.shape[1:])
        spec[name] = keras.InputSpec(shape=shape, dtype=str(value.dtype), name=name)
    return [spec]


def export_onnx(model, path, inputs=None, opset_version=None, verbose=False):
    """Write ``model`` as an ONNX file at ``path`` (inputs named as the model's, dynamic batch and
    token-sequence axes; outputs named after a dict output's keys, else ``output``). Under the
    torch backend only (see the module docs). Returns the path."""
    import keras

    if keras.backend.backend() != "torch":
        raise ExportError(
            f"ONNX export runs under the torch backend (PyTorch's exporter), and this process uses "
            f"KERAS_BACKEND={keras.backend.backend()}: load the same preset with KERAS_BACKEND=torch and "
            "export there, or use model.export(path, format='tf_saved_model') here")
    import torch

    sample = sample_inputs(model, inputs)
    names = sorted(sample)
    example = model({k: sample[k] for k in names}, training=False)
    output_names = list(example) if isinstance(example, dict) else ["output"]

    class Flat(torch.nn.Module):
        def __init__(self, wrapped):
            super().__init__()
            self.wrapped = wrapped

        def forward(self, *args):
            out = self.wrapped(dict(zip(names, args)), training=False)
            return tuple(out[k] for k in output_names) if isinstance(out, dict) else out

    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    dynamic = tuple({0: batch, **({1: sequence} if _is_sequence(sample[k]) else {})} for k in names)
    return _write_onnx(model, path, lambda: torch.onnx.export(
        Flat(model).eval(), tuple(torch.as_tensor(sample[k]) for k in names), dynamo=True,
        input_names=names, output_names=output_names, dynamic_shapes={"args": dynamic},
        opset_version=opset_version, verbose=verbose, external_data=False))


def export_onnx_decoder(model, path, max_length, opset_version=None, verbose=False):
    """A causal LM's decode step as ONNX, with its KV cache as inputs and outputs (a static cache of
    ``max_length`` positions, as the decode engine here keeps it):

    inputs ``input_ids`` (batch, 1), ``attention_mask`` (batch, max_length: 1 where a position
    holds a real token, prompt padding 0), ``cache_index`` (int32 scalar: where this token is
    written), ``past_0 ..`` (the cache buffers, zeros to start); outputs ``logits`` (batch, 1,
    vocab) and ``present_0 ..`` (the buffers to feed back). Dynamic batch. A prompt is fed one
    token at a time (``cache_index`` 0, 1, ...), then each generated token. Torch backend only."""
    import keras

    if keras.backend.backend() != "torch":
        raise ExportError(f"ONNX export runs under the torch backend; this process uses "
                          f"KERAS_BACKEND={keras.backend.backend()} (load the preset with KERAS_BACKEND=torch)")
    if not (hasattr(model, "init_cache") and hasattr(model, "call_with_cache")):
        raise ExportError(f"{type(model).__name__} has no KV cache to export (init_cache / call_with_cache): "
                          "export_onnx_decoder takes a causal LM")
    if not isinstance(max_length, int) or max_length < 2:
        raise InputError(f"export_onnx_decoder: max_length must be an int >= 2, got {max_length!r}")
    import torch

    batch = 2
    cache = model.init_cache(batch, max_length)
    leaves = [torch.as_tensor(keras.ops.convert_to_numpy(x)) for x in keras.tree.flatten(cache)]
    n = len(leaves)

    class Step(torch.nn.Module):
        def __init__(self, wrapped):
            super().__init__()
            self.wrapped = wrapped

        def forward(self, input_ids, attention_mask, cache_index, past):
            logits, new = self.wrapped.call_with_cache(input_ids, keras.tree.pack_sequence_as(cache, list(past)),
                                                       cache_index, attention_mask)
            return (logits,) + tuple(keras.tree.flatten(new))

    b = torch.export.Dim("batch", min=1, max=65536)
    dynamic = ({0: b}, {0: b}, None, [{0: (leaf.shape[0] // batch) * b} for leaf in leaves])
    sample = (torch.ones((batch, 1), dtype=torch.int32), torch.ones((batch, max_length), dtype=torch.int32),
              torch.tensor(0, dtype=torch.int32), leaves)
    names = ["input_ids", "attention_mask", "cache_index"] + [f"past_{i}" for i in range(n)]
    outputs = ["logits"] + [f"present_{i}" for i in range(n)]
    return _write_onnx(model, path, lambda: torch.onnx.export(
        Step(model).eval(), sample, dynamo=True, input_names=names, output_names=outputs, dynamic_shapes=dynamic,
        opset_version=opset_version, verbose=verbose, external_data=False))


def _write_onnx(model, path, export):
    """Run ``export()`` (a torch ONNXProgram) and save it at ``path`` only if everything succeeded."""
    import torch

    path = Path(os.fspath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with torch.no_grad():
            program = export()
        program.optimize()
        program.save(tmp)
        os.replace(tmp, path)
    except Exception as e:
        raise ExportError(f"ONNX export of {type(model).__name__} to {str(path)!r} failed: "
                          f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def export_model(model, export_super, filepath, format="tf_saved_model", verbose=None, input_signature_=None,
                 **kwargs):
    """``model.export``: ONNX through ``export_onnx``; other formats through Keras with the
    model's input signature filled in."""
    import keras

    raw_strings = kwargs.pop("raw_strings", False)
    if raw_strings and format != "tf_saved_model":
        raise ExportError(f"raw_strings=True is for format='tf_saved_model' (a serving signature taking strings), "
                          f"not format={format!r}")
    if format == "onnx" and kwargs.get("max_length") is not None:  # a causal LM's decode step with its cache
        return export_onnx_decoder(model, filepath, kwargs.pop("max_length"),
                                   opset_version=kwargs.pop("opset_version", None), verbose=bool(verbose))
    if format == "onnx":
        sample = kwargs.pop("inputs", None)
        return export_onnx(model, filepath, inputs=sample, opset_version=kwargs.pop("opset_version", None),
                           verbose=bool(verbose))
    if format == "tf_saved_model" and keras.backend.backend() == "torch":
        raise ExportError("format='tf_saved_model' under the torch backend needs torch_xla (Keras converts "
                          "through StableHLO): export an ONNX file (format='onnx'), or load the preset with "
                          "KERAS_BACKEND=jax or tensorflow for a SavedModel")
    if input_signature_ is None:
        sample = kwargs.pop("inputs", None)
        input_signature_ = input_signature(model, sample)
        if keras.backend.backend() == "jax" and "polymorphic_shapes" not in kwargs.get("jax2tf_kwargs", {}):
            # one symbolic sequence length shared by every token input (Keras gives each its own)
            shapes = {}
            for name, spec in input_signature_[0].items():
                rest = ", _" * (len(spec.shape) - (2 if spec.shape[1:2] == (None,) else 1))
                shapes[name] = "(batch, sequence" + rest + ")" if spec.shape[1:2] == (None,) else "(batch" + rest + ")"
            kwargs["jax2tf_kwargs"] = {**kwargs.get("jax2tf_kwargs", {}), "polymorphic_shapes": [shapes]}
    if raw_strings:
        from keras_models.export.raw_text import export_raw_strings

        return export_raw_strings(model, lambda path: export_super(
            path, format=format, verbose=False, input_signature=input_signature_, **kwargs), filepath, verbose=verbose)
    return export_super(filepath, format=format, verbose=verbose, input_signature=input_signature_, **kwargs)


__all__ = ["ExportError", "export_onnx", "export_onnx_decoder", "input_signature", "sample_inputs"]
