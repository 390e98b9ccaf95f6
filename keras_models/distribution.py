"""Model parallelism with Keras' distribution API (``keras.distribution.ModelParallel``).

``get_layout_map(model_or_preset, device_mesh)`` gives a ``keras.distribution.LayoutMap`` for any
family: Megatron-style tensor parallelism over the mesh's model axis. Projections into the
attention heads and the MLP's inner width (query/key/value, gate/up, fc1, ...) are split by output
column; the projections back (attention output, down, fc2, ...) by input row; embedding tables by
the hidden width. An axis that the mesh's model size does not divide is left whole, so the map is
valid for every checkpoint (only the speed, never the result, depends on the choice).

The keys are regular expressions on variable paths that match any model name in front of the
variable's own path (``[^/]+/block_0/attention/query/kernel`` matches ``bert_backbone/...`` and
``bert_backbone_2/...``), so a map made from one
instance applies to any other instance of the same architecture, however many models were built
before. Typical use (JAX, one host or several)::

    mesh = keras.distribution.DeviceMesh((2, 4), ["batch", "model"], keras.distribution.list_devices())
    layout_map = km.CausalLM.get_layout_map(mesh, preset="hf://org/llama")   # no weights are read
    keras.distribution.set_distribution(
        keras.distribution.ModelParallel(layout_map=layout_map, batch_dim_name="batch"))
    lm = km.CausalLM.from_preset("hf://org/llama")   # each device loads its shards
"""

from __future__ import annotations

import re

# Dense layers whose output is the wide side (split by column) / that project back (split by row).
ROW_PARALLEL = frozenset({
    "o_proj", "out_proj", "output", "dense_output", "attention_output", "down_proj", "fc2", "wo", "c_proj",
    "dense_4h_to_h", "w2", "proj_out", "output_dense", "out", "down",
})


def _axis_size(device_mesh, name):
    if name not in device_mesh.axis_names:
        raise ValueError(f"get_layout_map: the device mesh has no axis {name!r} (axes: {list(device_mesh.axis_names)})")
    return device_mesh.shape[list(device_mesh.axis_names).index(name)]


def layout_for(path, shape, model_size, model_axis="model"):
    """The layout of one variable (a tuple of mesh axis names / None), or None (replicated)."""
    parts = path.split("/")
    layer, kind = (parts[-2] if len(parts) > 1 else ""), parts[-1]

    def split(axis):
        if shape[axis] % model_size:
            return None
        return tuple(model_axis if i == axis else None for i in range(len(shape)))

    if len(shape) == 2 and kind in ("kernel", "embeddings"):
        if kind == "embeddings":
            return split(1)
        row = layer in ROW_PARALLEL
        return split(0 if row else 1) or split(1 if row else 0)
    if len(shape) == 1 and kind == "bias" and layer not in ROW_PARALLEL:
        return split(0)  # a column-split layer's bias follows its columns
    return None


def get_layout_map(model, device_mesh, model_parallel_dim_name="model", data_parallel_dim_name="batch"):
    """A ``keras.distribution.LayoutMap`` for ``model`` (a built task or backbone) on ``device_mesh``.
    ``data_parallel_dim_name`` is the mesh's batch axis (give ``ModelParallel`` the same name)."""
    import keras

    model_size = _axis_size(device_mesh, model_parallel_dim_name)
    _axis_size(device_mesh, data_parallel_dim_name)
    layout_map = keras.distribution.LayoutMap(device_mesh)
    for variable in model.weights:
        relative = variable.path.split("/", 1)[1] if "/" in variable.path else variable.path
        layout = layout_for(relative, tuple(variable.shape), model_size, model_parallel_dim_name)
        if layout is not None:
            # Keras full-matches the keys: any model name, then this variable's own path
            layout_map["[^/]+/" + re.escape(relative) if "/" in variable.path else re.escape(relative)] = layout
    return layout_map


def layout_map_from_preset(cls, preset, device_mesh, **kwargs):
    """``cls.from_preset(preset)``'s layout map, from its config alone: the model is built with
    deferred variables (nothing allocated, no weights read) and dropped."""
    from keras_models.layers.init import deferred_variables, discard_deferred

    import inspect

    names = {k: kwargs.pop(k) for k in ("model_parallel_dim_name", "data_parallel_dim_name") if k in kwargs}
    if "preprocessor" in inspect.signature(cls.from_preset).parameters:
        kwargs.setdefault("preprocessor", False)
    with deferred_variables():
        model = cls.from_preset(preset, load_weights=False, **kwargs)
    try:
        return get_layout_map(model, device_mesh, **names)
    finally:
        discard_deferred(model)


class class_or_instance_method:
    """``Model.get_layout_map(mesh, preset=...)`` on the class, ``model.get_layout_map(mesh)`` on a
    built instance."""

    def __init__(self, function):
        self.function = function
        self.__doc__ = function.__doc__

    def __get__(self, instance, owner):
        import functools

        return functools.partial(self.function, instance if instance is not None else owner)


def model_layout_map(model_or_cls, device_mesh, preset=None, model_parallel_dim_name="model",
                     data_parallel_dim_name="batch", **from_preset_kwargs):
    """Tensor-parallel ``keras.distribution.LayoutMap`` (see keras_models.distribution): on a built
    model, from its variables; on the class, from ``preset``'s config (no weights read)."""
    names = dict(model_parallel_dim_name=model_parallel_dim_name, data_parallel_dim_name=data_parallel_dim_name)
    if isinstance(model_or_cls, type):
        if preset is None:
            raise ValueError(f"{model_or_cls.__name__}.get_layout_map(device_mesh, preset=...): the class needs "
                             "the preset whose architecture it maps (or call it on a loaded model)")
        return layout_map_from_preset(model_or_cls, preset, device_mesh, **names, **from_preset_kwargs)
    if preset is not None:
        raise ValueError("get_layout_map on a loaded model maps that model: do not pass preset=")
    return get_layout_map(model_or_cls, device_mesh, **names)


__all__ = ["get_layout_map", "layout_map_from_preset", "layout_for", "model_layout_map"]
