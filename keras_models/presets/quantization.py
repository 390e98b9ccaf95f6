"""Quantized models in presets and ``.keras`` files, and hub checkpoints that are already quantized.

What ``save_to_preset`` writes for a model on which ``model.quantize("int8")`` / ``("int4")`` ran
----------------------------------------------------------------------------------------------------
* ``model.safetensors`` holds **dequantized float weights** (the int8/int4 values times their scales,
  in the layer's variable dtype, float32 by default) under the usual Hugging Face names. Transformers
  loads the folder as an ordinary float model with these weights; that is the honest reading of the
  folder for a float framework (its logits differ from ours only by Keras' dynamic int8 activation
  quantization), and it never sees raw int8 tensors as floats.
* ``keras_models_quantized.safetensors`` (:data:`QUANT_FILE`) holds, for every quantized layer, the
  exact variables Keras' own ``save_own_variables`` writes (int8 / packed int4 kernel, its scales,
  int4 zero points and group indices, bias), keyed ``"<HF name of the layer's weight>:<index>"``; its
  safetensors metadata records each layer's mode and ``quantization_config``.
* ``config.json`` gets a ``keras_models_quantization`` entry (:data:`CONFIG_KEY`): the modes, the side
  file and ``"float_weights": "dequantized"``. It deliberately is *not* ``quantization_config``: that
  key tells Transformers to run its own quantizer, and keras-models refuses it (below).

``from_preset`` of such a folder loads the float weights, calls ``quantize`` on exactly the layers the
side file lists (with their saved mode and config), then overwrites their quantized variables with the
saved ones, so the reloaded model is bit-for-bit the quantized model that was saved. Passing the
folder to a keras-models version without this module loads the float weights (no quantization).

``.keras`` files: Keras' quantized layers save their own variables, but our backbones build their
sublayers with the backbone's dtype policy, so a reload rebuilt float layers and failed ("expected 1
variables, received 0"). ``get_config`` of backbones and tasks now records a ``DTypePolicyMap``
(layer path -> quantized policy, the KerasHub convention, :func:`policy_with_quantization`); every
sublayer resolves its own policy from it by path and is rebuilt quantized.

Hub checkpoints already quantized (a ``quantization_config`` in config.json: GPTQ, AWQ,
bitsandbytes, fp8, ...) are refused with a :class:`ConfigError` naming the key and its
``quant_method`` (:func:`check_not_prequantized`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from keras_models import compat
from keras_models.compat import cheap_collections, has_sublayers, keras_would_quantize, own_variables, sublayers
from keras_models.errors import ConfigError, PresetError

logger = logging.getLogger("keras_models")

QUANT_FILE = "keras_models_quantized.safetensors"
CONFIG_KEY = "keras_models_quantization"
_META_KEY = "keras_models_quantization"


# --- hub checkpoints that are already quantized ------------------------------------------------------
def check_not_prequantized(hf_config, source="config.json"):
    """Raise ConfigError if config.json describes a checkpoint quantized by another library."""
    qc = hf_config.get("quantization_config") if isinstance(hf_config, dict) else None
    if qc is None:
        return
    method = qc.get("quant_method") if isinstance(qc, dict) else None
    if method is None and isinstance(qc, dict):  # bitsandbytes configs of older Transformers
        method = "bitsandbytes" if any(k.startswith(("load_in_", "bnb_")) for k in qc) else None
    raise ConfigError(
        f"{source}: quantization_config with quant_method={method!r}: this checkpoint is already "
        f"quantized ({method or 'unknown method'}), and keras-models loads float checkpoints only "
        "(its packed integer tensors would be read as garbage). Load the original float checkpoint "
        "and call model.quantize('int8') or model.quantize('int4') instead."
    )


# --- quantize(): skip what cannot be quantized ---------------------------------------------------------
def quantize_model(model, keras_quantize, mode=None, config=None, filters=None, **kwargs):
    """``model.quantize`` for our backbones and tasks: Keras' ``Model.quantize`` restricted to built
    layers (a stateless layer that was never called, e.g. a rotary embedding, would make Keras raise)
    and never to a layer whose weight is shared with another role (a tied embedding used as the
    output projection reads the raw table, so quantizing it would break the head)."""
    shared = _shared_layers(model)
    if shared:
        logger.info("quantize: %s not quantized (weights shared with a tied head): %s",
                    type(model).__name__, ", ".join(sorted(layer.path for layer in shared.values())))

    def keep(layer):
        return layer.built and id(layer) not in shared and keras_would_quantize(layer, filters)

    with cheap_collections():
        return keras_quantize(mode, config=config, filters=keep, **kwargs)


def _all_layers(model):
    return [model, *sublayers(model)]


def _leaves(model):
    return [layer for layer in _all_layers(model) if not has_sublayers(layer)]


def _leaf_owner(model):
    """id(variable) -> the leaf layer that owns it."""
    owner = {}
    for layer in _leaves(model):
        for v in own_variables(layer):
            owner.setdefault(id(v), layer)
    return owner


def _shared_layers(model):
    if not hasattr(model, "weight_rules"):
        return {}
    try:
        rules = model.weight_rules()
    except Exception:  # a model that cannot describe its weights: nothing known to be shared
        return {}
    counts = {}
    for r in rules:
        if getattr(r, "part", None) is None:  # pieces of one variable (stacked experts) are not sharing
            counts[id(r.variable)] = counts.get(id(r.variable), 0) + 1
    owner = _leaf_owner(model)
    return {id(owner[v]): owner[v] for v, n in counts.items() if n > 1 and v in owner}


# --- .keras files -----------------------------------------------------------------------------------
def policy_with_quantization(model):
    """``model``'s dtype policy, as a ``DTypePolicyMap`` of its quantized layers when it has any."""
    from keras.dtype_policies import DTypePolicyMap

    policy = model.dtype_policy
    if isinstance(policy, DTypePolicyMap):
        return policy
    quantized = [layer for layer in _all_layers(model) if layer.quantization_mode is not None]
    if not quantized:
        return policy
    out = DTypePolicyMap(default_policy=policy)
    for layer in quantized:
        out[_path_pattern(layer.path)] = layer.dtype_policy
    return out


def _path_pattern(path):
    """A ``DTypePolicyMap`` key (a regex, fullmatched) for a layer path without its first component
    (the backbone's or task's name): a reloaded model builds some sublayers outside that name scope
    (``block_1/output`` instead of ``bert_backbone_1/block_1/output``)."""
    import re

    head, sep, rest = path.partition("/")
    return "(?:[^/]+/)?" + re.escape(rest) if sep else re.escape(path)


def record_policy_map(model, config):
    """Put the quantized layers' policies into a ``get_config`` dict (and into a nested backbone's)."""
    import keras

    policy = policy_with_quantization(model)
    if policy is model.dtype_policy and not _is_map(policy):
        return config
    serialized = keras.dtype_policies.serialize(policy)
    config["dtype"] = serialized
    backbone = config.get("backbone")
    if isinstance(backbone, dict) and isinstance(backbone.get("config"), dict):
        backbone["config"]["dtype"] = serialized  # the task's head layers share the backbone's policy
    return config


def _is_map(policy):
    from keras.dtype_policies import DTypePolicyMap

    return isinstance(policy, DTypePolicyMap)


# --- save_to_preset ----------------------------------------------------------------------------------
class _Dequantized:
    """Stands in for a quantized variable in an export rule: ``value`` is the float array."""

    def __init__(self, array):
        self.value = array
        self.shape = array.shape
        self.dtype = str(array.dtype)


def quantized_layers(model):
    return [layer for layer in _all_layers(model)
            if getattr(layer, "quantization_mode", None) is not None and not has_sublayers(layer)]


def export_plan(model, prefix=""):
    """``(rules, side_tensors, side_metadata, config_entry)`` for saving ``model``; ``None`` when no
    layer is quantized. ``rules``: the model's weight rules with every quantized weight replaced by
    its dequantized float value."""
    layers = quantized_layers(model)
    if not layers:
        return None
    for layer in layers:
        mode = layer.quantization_mode
        if mode not in ("int8", "int4"):
            raise PresetError(f"save_to_preset: layer {layer.path} is quantized with mode {mode!r}; "
                              "only int8 and int4 quantized models can be saved as a preset")
        if getattr(layer, "lora_enabled", False):
            raise PresetError(f"save_to_preset: layer {layer.path} is quantized and has LoRA enabled; "
                              "merge or drop the adapters before saving a quantized preset")
    main = {}
    for layer in layers:
        var = getattr(layer, "_kernel", None)
        if var is None:
            var = getattr(layer, "_embeddings", None)
        if var is None:
            raise PresetError(f"save_to_preset: cannot save the quantized layer {layer.path} "
                              f"({type(layer).__name__}): only Dense and Embedding layers are supported")
        main[id(var)] = layer
    with _raw_kernels(layers):
        rules = list(model.weight_rules())
    import keras
    from dataclasses import replace

    out_rules, side, meta = [], {}, {}
    for r in rules:
        layer = main.get(id(r.variable))
        if layer is None:
            out_rules.append(r)
            continue
        name = (f"{prefix}.{r.hf}" if prefix else r.hf) if r.base else r.hf
        out_rules.append(replace(r, variable=_Dequantized(dequantize(layer))))
        if not r.export or name in meta:
            continue
        store = {}
        layer.save_own_variables(store)
        for i in range(len(store)):
            side[f"{name}:{i}"] = np.asarray(_numpy(store[str(i)]))
        qc = getattr(layer, "quantization_config", None)
        meta[name] = {"mode": layer.quantization_mode, "class": type(layer).__name__, "n": len(store),
                      "config": keras.saving.serialize_keras_object(qc) if qc is not None else None}
    exported = {id(main[id(r.variable)]) for r in rules if r.export and id(r.variable) in main}
    unsaved = sorted(layer.path for layer in layers if id(layer) not in exported)
    if unsaved:
        raise PresetError("save_to_preset: quantized layers without an exported weight in the weight "
                          f"map (cannot be saved): {', '.join(unsaved)}")
    modes = sorted({m["mode"] for m in meta.values()})
    entry = {"modes": modes, "file": QUANT_FILE, "layers": len(meta), "float_weights": "dequantized",
             "note": "model.safetensors holds dequantized float weights (what Transformers loads); "
                     f"{QUANT_FILE} holds the quantized kernels and scales keras-models loads"}
    return out_rules, side, {_META_KEY: json.dumps(meta, sort_keys=True)}, entry


class _raw_kernels:
    """While active, ``layer.kernel`` / ``layer.embeddings`` of int4 layers return the packed variable
    itself (not an unpacked copy), so rules can be matched to layers by variable identity."""

    def __init__(self, layers):
        self.layers = layers
        self.saved = []

    def __enter__(self):
        from keras.dtype_policies import DTypePolicyMap

        for layer in self.layers:
            if layer.quantization_mode == "int4":
                policy = compat.dtype_policy_of(layer)
                plain = policy.default_policy if isinstance(policy, DTypePolicyMap) else None
                if plain is None:
                    import keras

                    plain = keras.dtype_policies.DTypePolicy(policy.variable_dtype)
                self.saved.append((layer, policy))
                compat.set_dtype_policy(layer, plain)
        return self

    def __exit__(self, *exc):
        for layer, policy in self.saved:
            compat.set_dtype_policy(layer, policy)
        return False


def dequantize(layer):
    """The float weight (Keras layout, the layer's variable dtype) a quantized Dense or Embedding
    layer computes with."""
    import keras
    from keras import quantizers

    mode = layer.quantization_mode
    dtype = np.dtype("float32")
    if str(layer.dtype_policy.variable_dtype) in ("float16", "float64"):
        dtype = np.dtype(str(layer.dtype_policy.variable_dtype))
    embedding = isinstance(layer, keras.layers.Embedding)
    q = compat.stored_embeddings(layer) if embedding else compat.stored_kernel(layer)
    if mode == "int4":
        q = quantizers.unpack_int4(q, compat.int4_output_dim(layer), axis=-1)
    q = _numpy(q).astype(np.float64)
    scale = _numpy(layer.embeddings_scale if embedding else layer.kernel_scale).astype(np.float64)
    zero = getattr(layer, "embeddings_zero" if embedding else "kernel_zero", None)
    if zero is not None:  # int4 sub-channel: (q - zero) * scale, per group
        g = _numpy(layer.g_idx).astype(np.int64)
        zero = _numpy(zero).astype(np.float64)
        if embedding:  # scale / zero (vocab, groups), groups along the output axis
            w = (q - zero[:, g]) * scale[:, g]
        else:  # scale / zero (groups, units), groups along the input axis
            w = (q - zero[g, :]) * scale[g, :]
    elif embedding:  # per-row scale (vocab,)
        w = q / scale[:, None]
    else:  # per-output-unit scale (units,)
        w = q / scale[None, :]
    return w.astype(dtype)


def _numpy(x):
    import keras

    return keras.ops.convert_to_numpy(x)


def write_side_file(folder, side, metadata):
    from keras_models.presets.safetensors_io import save_file

    save_file(side, Path(folder) / QUANT_FILE, metadata=metadata)


# --- from_preset ----------------------------------------------------------------------------------------
def apply_saved_quantization(model, folder, hf_config):
    """Re-quantize ``model`` (whose float weights were just loaded from ``folder``) as the preset
    records, and load the saved quantized variables exactly. No-op for a float preset."""
    entry = hf_config.get(CONFIG_KEY)
    if not entry:
        return
    folder = Path(folder)
    source = folder / "config.json"
    fname = entry.get("file") if isinstance(entry, dict) else None
    if not isinstance(fname, str) or Path(fname).name != fname or fname in ("", ".", ".."):
        raise ConfigError(f"{source}: {CONFIG_KEY} has an invalid 'file' entry {fname!r}")
    path = folder / fname
    if not path.is_file():
        raise PresetError(f"{source} records a quantized model ({CONFIG_KEY}) but {path} is missing; "
                          f"remove the {CONFIG_KEY} key to load the dequantized float weights")
    from keras_models.presets.safetensors_io import SafetensorsFile

    f = SafetensorsFile(path)
    try:
        try:
            meta = json.loads(f.metadata[_META_KEY])
        except (KeyError, ValueError, TypeError) as e:
            raise PresetError(f"{path}: no valid {_META_KEY} metadata ({e})") from e
        report = getattr(model, "load_report", None)
        loaded = set(report.loaded) if report is not None else set()
        p = report.prefix if report is not None else ""
        owner = _leaf_owner(model)
        targets = {}
        for r in model.weight_rules():
            layer = owner.get(id(r.variable))
            if layer is None:
                continue
            for n in r.names():
                name = (p + n) if r.base else n
                if name in meta and name in loaded:
                    targets.setdefault(name, layer)
        skipped = sorted(set(meta) - set(targets))
        if skipped:
            logger.info("%s: %d quantized layers are not part of this model (another task's head): %s",
                        path, len(skipped), ", ".join(skipped[:12]))
        import keras

        groups = {}
        for name, layer in targets.items():
            m = meta[name]
            groups.setdefault((m["mode"], json.dumps(m.get("config"), sort_keys=True)), []).append(layer)
        for (mode, cfg), layers in groups.items():
            cfg = json.loads(cfg)
            ids = {id(layer) for layer in layers}
            config = keras.saving.deserialize_keras_object(cfg) if cfg is not None else None
            model.quantize(mode if config is None else None, config=config,
                           filters=lambda layer, ids=ids: id(layer) in ids)
        for name, layer in targets.items():
            if layer.quantization_mode != meta[name]["mode"]:
                raise PresetError(f"{path}: could not quantize {layer.path} ({name}) as {meta[name]['mode']}")
            store = {str(i): f.get(f"{name}:{i}") for i in range(int(meta[name]["n"]))}
            try:
                layer.load_own_variables(store)
            except (ValueError, KeyError) as e:
                raise PresetError(f"{path}: cannot load the quantized variables of {name} into "
                                  f"{layer.path}: {e}") from e
    finally:
        f.close()
