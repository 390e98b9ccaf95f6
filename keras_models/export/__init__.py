"""Export a model for serving outside Python training code.

* ``export_onnx(model, path)``: an ONNX graph with dynamic batch (and, for token inputs, sequence)
  axes, through PyTorch's ``torch.export``-based exporter. It runs under the torch backend: a preset
  loads the same weights on every backend, so export from ``KERAS_BACKEND=torch``. (Keras' own
  ``export(format="onnx")`` uses the TorchScript tracer for dynamic shapes, which fails on Keras'
  LayerNormalization; under TensorFlow it goes through tf2onnx, which emits ops ONNX Runtime
  rejects for Keras' GELU.)
* ``input_signature(model)``: the model's inputs as ``keras.InputSpec``s (batch and sequence axes
  left open), which ``model.export(..., format="tf_saved_model")`` uses by default under JAX and
  TensorFlow.

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
    path = Path(os.fspath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with torch.no_grad():
            program = torch.onnx.export(
                Flat(model).eval(), tuple(torch.as_tensor(sample[k]) for k in names), dynamo=True,
                input_names=names, output_names=output_names, dynamic_shapes={"args": dynamic},
                opset_version=opset_version, verbose=verbose, external_data=False)
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
    return export_super(filepath, format=format, verbose=verbose, input_signature=input_signature_, **kwargs)


__all__ = ["ExportError", "export_onnx", "input_signature", "sample_inputs"]
