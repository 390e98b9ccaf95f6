"""Typed model specs: one declaration per backbone of what it reads from config.json.

A spec is a frozen, keyword-only dataclass. Each field says where its value lives in a Hugging
Face config (``key``), its default when the key is absent (an explicit null gives None where the
field's type admits None, as Transformers reads it, and the default otherwise), how the value is
converted on the way in (``read``) and out (``write``), and whether it must be a positive integer (``dim``).
The same declaration reads config.json (:meth:`Spec.from_hf`), writes it back
(:meth:`Spec.to_hf`), serialises the model for Keras (:meth:`Spec.to_config` /
:meth:`Spec.from_config`) and documents the family (:meth:`Spec.table`)::

    @dataclass(frozen=True, kw_only=True)
    class ViTSpec(Spec):
        hidden_size: int = dim("hidden_size")
        num_layers: int = dim("num_hidden_layers")
        layer_norm_eps: float = hf("layer_norm_eps", 1e-12)
        class_token: bool = const(True)          # a family constant, not in config.json

Composite models nest specs: ``nested("vision_config", ViTSpec)`` reads a sub-config into a spec
of its own, and ``tower("text_config", "clip_text_model")`` holds a whole sub-model's config that
is resolved to any registered backbone by its ``model_type`` (VisionTextDualEncoder's towers).

Keys that change the numerics and are not implemented are listed in ``unsupported`` (key ->
the values we do implement) and raise :class:`~keras_models.errors.ConfigError` naming the key
and the file; they are never ignored silently.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import ClassVar

from keras_models.errors import ConfigError

REQUIRED = dataclasses.MISSING


def hf(key, default=REQUIRED, *, read=None, write=None, dim=False, doc=""):
    """A field read from config.json ``key`` (a str, or a tuple of alternative names: the first
    present one is read, the first is written). ``read(value)`` / ``write(value)`` convert."""
    meta = {"hf": key, "read": read, "write": write, "dim": dim, "doc": doc}
    if default is REQUIRED:
        return dataclasses.field(metadata=meta)
    if isinstance(default, (list, dict, set)):
        raise TypeError("hf(): use a tuple or None as a default, not a mutable container")
    return dataclasses.field(default=default, metadata=meta)


def dim(key, default=REQUIRED, doc=""):
    """A required (or defaulted) positive integer from config.json."""
    return hf(key, default, dim=True, doc=doc)


def const(value, doc=""):
    """A family constant: part of the spec (and of the Keras config) but not of config.json."""
    return dataclasses.field(default=value, metadata={"hf": None, "doc": doc})


def nested(key, spec_cls, required=True, doc=""):
    """A sub-config (``text_config``, ``vision_config``...) read into its own spec."""
    meta = {"hf": key, "nested": spec_cls, "required": required, "doc": doc}
    return dataclasses.field(default=None, metadata=meta)


def tower(key, default_model_type, required=True, doc=""):
    """A sub-model's whole config.json (a dict with its ``model_type``), resolved to a registered
    backbone when the model is built (:func:`build_tower`)."""
    meta = {"hf": key, "tower": default_model_type, "required": required, "doc": doc}
    return dataclasses.field(default=None, metadata=meta)


class Spec:
    """Base of every spec (subclasses are ``@dataclass(frozen=True, kw_only=True)``)."""

    # config.json key -> the values of it that are implemented (anything else raises ConfigError)
    unsupported: ClassVar[dict] = {}
    # keys this spec knows about and deliberately does not read (harmless for the numerics)
    ignored: ClassVar[tuple] = ()

    # --- reading config.json --------------------------------------------------------------------
    @classmethod
    def from_hf(cls, config: dict, source="config.json"):
        """The spec described by the Transformers config dict ``config`` (errors name ``source``)."""
        if not isinstance(config, dict):
            raise ConfigError(f"{source}: expected a JSON object, got {type(config).__name__}")
        for key, accepted in cls.unsupported.items():
            if key in config and config[key] not in accepted:
                raise ConfigError(
                    f"{source}: {key}={config[key]!r} changes the model's numerics and is not "
                    f"implemented by {cls.__name__} (supported: {list(accepted)})"
                )
        values = {}
        for f in dataclasses.fields(cls):
            meta = f.metadata
            key = meta.get("hf")
            if key is None:
                continue
            name = key if isinstance(key, str) else key[0]
            if "nested" in meta or "tower" in meta:
                sub = config.get(name)
                if sub is None:
                    if meta["required"]:
                        raise ConfigError(f"{source}: the nested config {name!r} is missing")
                    continue
                if not isinstance(sub, dict):
                    raise ConfigError(f"{source}: {name!r} must be an object, got {type(sub).__name__}")
                where = f"{source} [{name}]"
                if "nested" in meta:
                    values[f.name] = meta["nested"].from_hf(sub, where)
                else:
                    values[f.name] = _tower_config(sub, meta["tower"], where)
                continue
            present = [k for k in ((key,) if isinstance(key, str) else key) if config.get(k) is not None]
            if present:
                value = config[present[0]]
                if meta.get("read") is not None:
                    try:
                        value = meta["read"](value)
                    except (TypeError, ValueError, KeyError) as e:
                        raise ConfigError(f"{source}: key {present[0]!r} has invalid value {config[present[0]]!r} ({e})") from e
                values[f.name] = _checked(cls, f, value, f"{source}: key {present[0]!r}")
                if f.name.endswith(("eps", "epsilon")) and isinstance(values[f.name], (int, float)) \
                        and not values[f.name] > 0:
                    raise ConfigError(f"{source}: key {present[0]!r} must be > 0 (a norm's epsilon), "
                                      f"got {value!r}")
            elif any(k in config for k in ((key,) if isinstance(key, str) else key)) and _allows_none(cls, f):
                # an explicit null means "none" (no sliding window, no softcap, kv heads = heads...),
                # as Transformers reads it; only an absent key takes the default
                values[f.name] = None
            elif f.default is REQUIRED:
                raise ConfigError(f"{source}: required key {name!r} is missing")
        values = cls.adjust_from_hf(config, values, source)
        return cls._make(values, source)

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        """Hook for the few values that depend on several keys (returns ``values``)."""
        return values

    @classmethod
    def _make(cls, values, source):
        try:
            spec = cls(**values)
        except TypeError as e:
            raise ConfigError(f"{source}: {cls.__name__}: {e}") from e
        spec.validate(source)
        return spec

    def validate(self, source="config.json"):
        """Cross-field checks (overridden by specs; raise ConfigError naming the keys)."""

    # --- writing config.json ----------------------------------------------------------------------
    def to_hf(self) -> dict:
        """The config.json entries this spec describes (the inverse of :meth:`from_hf`)."""
        out = {}
        for f in dataclasses.fields(self):
            meta, value = f.metadata, getattr(self, f.name)
            key = meta.get("hf")
            if key is None:
                continue
            name = key if isinstance(key, str) else key[0]
            if "nested" in meta:
                if value is not None:
                    out[name] = value.to_hf()
                continue
            if "tower" in meta:
                if value is not None:
                    out[name] = dict(value)
                continue
            if meta.get("write") is not None:
                value = meta["write"](value)
            out[name] = _jsonable(value)
        return self.adjust_to_hf(out)

    def adjust_to_hf(self, out):
        return out

    # --- Keras serialisation ----------------------------------------------------------------------
    def to_config(self) -> dict:
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.to_config() if isinstance(value, Spec) else _jsonable(value)
        return out

    @classmethod
    def from_config(cls, config: dict):
        values = {}
        for f in dataclasses.fields(cls):
            if f.name not in config:
                continue
            value = config[f.name]
            if "nested" in f.metadata and isinstance(value, dict):
                value = f.metadata["nested"].from_config(value)
            elif isinstance(value, list) and "tower" not in f.metadata:
                value = _tupled(value)
            values[f.name] = value
        return cls._make(values, f"{cls.__name__} config")

    @classmethod
    def field_names(cls):
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def pop_from(cls, kwargs: dict):
        """Build the spec from constructor kwargs (removing its fields from ``kwargs``); nested
        values may be specs or their ``to_config()`` dicts (as a Keras config holds them)."""
        own = {name: kwargs.pop(name) for name in cls.field_names() if name in kwargs}
        return cls.from_config(own)

    def kwargs(self):
        """The fields as constructor keyword arguments (nested specs stay specs)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def dummy_inputs(self):
        """Inputs that build a model of this spec (the input signature; overridden per modality)."""
        import numpy as np

        return {"input_ids": np.ones((1, 2), "int32"), "attention_mask": np.ones((1, 2), "int32")}

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    @classmethod
    def table(cls):
        """(field, config.json key, default, doc) rows, for docs and for reading a family at a glance."""
        rows = []
        for f in dataclasses.fields(cls):
            key = f.metadata.get("hf")
            default = "required" if f.default is REQUIRED else f.default
            rows.append((f.name, key if isinstance(key, (str, type(None))) else "/".join(key), default,
                         f.metadata.get("doc", "")))
        return rows


def _tower_config(sub, default_model_type, source):
    sub = dict(sub)
    sub.setdefault("model_type", default_model_type)
    tower_kwargs(sub, source)  # read it now: a bad tower config fails at load, naming its key
    return sub


def tower_kwargs(config, source):
    """(backbone class, constructor kwargs) for a tower config (a dict with ``model_type``)."""
    from keras_models.models.registry import backbone_for_config

    cls = backbone_for_config(config, source=source)
    try:
        return cls, cls.config_from_hf(config)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from e


def build_tower(config: dict, name, dtype=None):
    """A backbone instance for a tower config (a nested config.json dict with ``model_type``)."""
    cls, kwargs = tower_kwargs(config, f"{name} config")
    if dtype is not None:
        kwargs["dtype"] = dtype
    return cls(name=name, **kwargs)


def _checked(cls, f, value, where):
    """Type-check a config value against the field's annotation (int, float, bool, str, tuple)."""
    if f.metadata.get("dim"):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{where} must be a positive integer, got {value!r}")
        if value >= 2**31:  # sizes index int32 tensors on every backend
            raise ConfigError(f"{where} must be below 2**31, got {value!r}")
        return value
    kinds = _annotation_kinds(cls, f)
    if not kinds or value is None:
        return value
    if isinstance(value, bool):
        ok = bool in kinds
    elif isinstance(value, int):
        ok = int in kinds or float in kinds
    elif isinstance(value, float):
        ok = float in kinds
        if ok and not math.isfinite(value):
            raise ConfigError(f"{where} must be finite, got {value!r}")
    elif isinstance(value, (list, tuple)):
        ok = tuple in kinds
        value = _tupled(value) if ok else value
    else:
        ok = any(isinstance(value, k) for k in kinds)
    if not ok:
        names = "/".join(k.__name__ for k in kinds)
        raise ConfigError(f"{where} must be {names}, got {type(value).__name__} {value!r}")
    return value


_HINTS = {}


def _allows_none(cls, f):
    """Whether the field's annotation admits None (``int | None``, ``Optional[...]``)."""
    hint = _hints(cls).get(f.name)
    return (typing.get_origin(hint) in (typing.Union, types.UnionType)
            and type(None) in typing.get_args(hint))


def _hints(cls):
    hints = _HINTS.get(cls)
    if hints is None:
        try:
            hints = typing.get_type_hints(cls)
        except Exception:  # unresolvable annotations: no type check
            hints = {}
        _HINTS[cls] = hints
    return hints


def _annotation_kinds(cls, f):
    hint = _hints(cls).get(f.name)
    if hint is None:
        return ()
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    kinds = []
    for a in args:
        origin = typing.get_origin(a) or a
        if origin in (int, float, bool, str, tuple, dict):
            kinds.append(origin)
        elif a is type(None):
            continue
        else:
            return ()  # something richer: the spec checks it itself
    return tuple(kinds)


def _jsonable(value):
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _tupled(value):
    return tuple(_tupled(v) for v in value) if isinstance(value, list) else value


__all__ = ["Spec", "hf", "dim", "const", "nested", "tower", "build_tower", "tower_kwargs", "REQUIRED"]
