"""Declarative weight maps: Hugging Face tensor name <-> Keras variable, with invertible ops.

A model describes its weights as a list of :class:`Rule` objects. The same list loads a
checkpoint (HF -> Keras, :func:`load_rules`) and exports one (Keras -> HF, :func:`export_rules`).

Names in rules are *relative*: ``base=True`` rules belong to the base model and are looked up with
or without the family's ``base_model_prefix`` (``bert.``), exactly as Transformers accepts both;
head rules (``base=False``) are absolute.
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import os
import sys
from dataclasses import dataclass, field

import numpy as np

from keras_models.errors import WeightMismatchError
from keras_models.layers.init import materialise

logger = logging.getLogger("keras_models")


class Op:
    """An invertible transform between an HF tensor and a Keras variable value."""

    def to_keras(self, x: np.ndarray) -> np.ndarray:
        return x

    def to_hf(self, x: np.ndarray) -> np.ndarray:
        return x

    def keras_shape(self, hf_shape: tuple) -> tuple:
        return tuple(hf_shape)


class Transpose(Op):
    """Linear weights: HF stores (out, in), Keras Dense stores (in, out). Any rank: axes reversed
    unless ``axes`` is given."""

    def __init__(self, axes=None):
        self.axes = tuple(axes) if axes is not None else None

    def _inv(self):
        return None if self.axes is None else tuple(np.argsort(self.axes))

    def to_keras(self, x):
        return np.transpose(x, self.axes)

    def to_hf(self, x):
        return np.transpose(x, self._inv())

    def keras_shape(self, s):
        return tuple(s[::-1]) if self.axes is None else tuple(s[a] for a in self.axes)


class Reshape(Op):
    """Reshape between ``hf_shape`` and ``keras_shape`` (both given, -1 allowed once each)."""

    def __init__(self, hf_shape, keras_shape):
        self.hf, self.k = tuple(hf_shape), tuple(keras_shape)

    def to_keras(self, x):
        return np.reshape(x, self.k)

    def to_hf(self, x):
        return np.reshape(x, self.hf)

    def keras_shape(self, s):
        total = int(np.prod(s, dtype=np.int64))
        known = int(np.prod([d for d in self.k if d != -1], dtype=np.int64))
        return tuple(total // max(known, 1) if d == -1 else d for d in self.k)


class Chain(Op):
    def __init__(self, *ops):
        self.ops = ops

    def to_keras(self, x):
        for op in self.ops:
            x = op.to_keras(x)
        return x

    def to_hf(self, x):
        for op in reversed(self.ops):
            x = op.to_hf(x)
        return x

    def keras_shape(self, s):
        for op in self.ops:
            s = op.keras_shape(s)
        return s


IDENTITY = Op()
TRANSPOSE = Transpose()


@dataclass
class Rule:
    """``hf`` tensor name <-> ``variable`` (a keras.Variable), through ``op``."""

    hf: str
    variable: object
    op: Op = IDENTITY
    base: bool = True
    # Tied weights: present in some checkpoints, absent in others; never exported twice.
    optional: bool = False
    export: bool = True
    # Other names the tensor may have in a checkpoint (read on load, never written).
    aliases: tuple = ()
    # Many checkpoint tensors -> one variable: the index (a tuple of ints / slices) of the piece of
    # ``variable`` this tensor fills (e.g. one expert's gate half of stacked MoE experts). The rules
    # naming pieces of one variable load into one buffer, assigned once; export slices them back.
    part: tuple | None = None

    def target_shape(self):
        """The shape this rule's tensor has on the Keras side (its piece of the variable)."""
        shape = tuple(self.variable.shape)
        return shape if self.part is None else _piece_shape(shape, self.part)

    def names(self):
        """Candidate checkpoint names: ``hf``, the aliases, and the legacy LayerNorm names
        (``gamma``/``beta``) that Transformers also accepts for ``LayerNorm.weight``/``.bias``."""
        out = [self.hf, *self.aliases]
        for suffix, legacy in ((".weight", ".gamma"), (".bias", ".beta")):
            if self.hf.endswith(suffix) and "LayerNorm" in self.hf.rsplit(".", 2)[-2]:
                out.append(self.hf[: -len(suffix)] + legacy)
        return out


def mount(rules, prefix):
    """A tower's rules placed under ``prefix`` in a composite checkpoint (``text_model.``,
    ``model.vision_tower.``): absolute names, aliases moved along."""
    from dataclasses import replace

    return [replace(r, hf=prefix + r.hf, base=False, aliases=tuple(prefix + a for a in r.aliases))
            for r in rules]


@dataclass
class LoadReport:
    loaded: list = field(default_factory=list)
    unused: list = field(default_factory=list)
    prefix: str = ""


def _detect_prefix(keys, base_rules, prefix):
    """Find how base-model tensors are named in this checkpoint: with or without ``prefix.``."""
    if not prefix:
        return ""
    bare = sum(1 for r in base_rules if r.hf in keys)
    prefixed = sum(1 for r in base_rules if f"{prefix}.{r.hf}" in keys)
    return f"{prefix}." if prefixed > bare else ""


def load_rules(rules, reader, *, prefix="", ignore=(), known_unused=(), source=None):
    """Assign every rule's variable from ``reader`` (a CheckpointReader).

    All names and shapes are checked before any value is read, so a mismatch raises
    :class:`WeightMismatchError` naming every missing/mis-shaped tensor and nothing is half-loaded.
    Tensors in the file that no rule uses raise too, unless they match ``ignore`` (buffers such as
    ``position_ids``) or ``known_unused`` (heads of other tasks: reported as a warning).
    """
    source = source or getattr(reader, "folder", "checkpoint")
    keys = set(reader.keys())
    p = _detect_prefix(keys, [r for r in rules if r.base], prefix)
    missing, bad_shape, bad_dtype, plan = [], [], [], []
    also_used = set()
    for r in rules:
        candidates = [(p + n) if r.base else n for n in r.names()]
        present = [n for n in candidates if n in keys]
        also_used.update(present[1:])
        if not present:
            if not r.optional:
                missing.append(candidates[0])
            continue
        name = present[0]
        want = r.target_shape()
        got = r.op.keras_shape(tuple(reader.shape(name)))
        if got != want:
            bad_shape.append(f"{name}: checkpoint {tuple(reader.shape(name))} -> {got}, model expects {want}")
            continue
        if not _float_compatible(reader.dtype(name), r.variable.dtype):
            bad_dtype.append(f"{name}: checkpoint {reader.dtype(name)}, model expects {r.variable.dtype}")
            continue
        plan.append((name, r))
    used = {name for name, _ in plan} | also_used
    used |= {((p + r.hf) if r.base else r.hf) for r in rules if r.optional}
    leftovers = sorted(k for k in keys - used if not any(fnmatch.fnmatch(k, g) for g in ignore))
    reported = [k for k in leftovers if any(fnmatch.fnmatch(k, g) for g in known_unused)]
    unexpected = [k for k in leftovers if k not in reported]
    problems = []
    if missing:
        problems.append(f"missing tensors: {_short(missing)}")
    if bad_shape:
        problems.append("wrong shapes: " + "; ".join(bad_shape[:20]))
    if bad_dtype:
        problems.append(
            "integer or bool tensors for float variables (a quantised checkpoint? its config.json "
            "quantization_config is not supported; no silent cast): " + "; ".join(bad_dtype[:20]))
    if unexpected:
        problems.append(f"unexpected tensors (not used by this model): {_short(unexpected)}")
    if problems:
        raise WeightMismatchError(f"Cannot load weights from {source}: " + " | ".join(problems))
    # Largest tensors first: while the big ones (embeddings) load, little else is resident yet, so
    # the transient copy of one tensor adds least to the peak.
    sizes = {name: int(np.prod(reader.shape(name), dtype=np.int64)) * np.dtype(_np_dtype(reader.dtype(name))).itemsize
             for name, _ in plan}
    plan.sort(key=lambda item: -sizes[item[0]])
    _check_parts(rules, source)
    buffers = {}  # id(variable) -> [buffer, pieces still to fill] for rules with a ``part``
    for _, r in plan:
        if r.part is not None:
            entry = buffers.setdefault(id(r.variable), [None, 0])
            entry[1] += 1
    with _progress(sum(sizes.values()), source) as bar:
        for name, r in plan:
            value = r.op.to_keras(reader.get(name))
            if r.part is None:
                materialise(r.variable, np.require(value, dtype=_np_dtype(r.variable.dtype), requirements="C"))
            else:
                entry = buffers[id(r.variable)]
                if entry[0] is None:
                    entry[0] = np.zeros(tuple(r.variable.shape), _np_dtype(r.variable.dtype))
                entry[0][r.part] = value
                entry[1] -= 1
                if entry[1] == 0:  # every piece read: one assignment, then the buffer goes
                    materialise(r.variable, entry[0])
                    entry[0] = None
            bar.update(sizes[name])
    if reported:
        logger.info(
            "%d tensors in %s are not used by this model (another task's head): %s",
            len(reported), source, _short(reported),
        )
    return LoadReport(loaded=[n for n, _ in plan], unused=reported, prefix=p)


PROGRESS_MIN_BYTES = 200 * 10**6  # checkpoints from this size on show a progress bar while loading


class _NoBar:
    def update(self, n):
        pass


@contextlib.contextmanager
def _progress(total, source):
    """A tqdm bar (bytes, on stderr) over a load of at least PROGRESS_MIN_BYTES; switched off by
    KERAS_MODELS_NO_PROGRESS=1 or HF_HUB_DISABLE_PROGRESS_BARS=1, as Hugging Face's bars are."""
    quiet = any(os.environ.get(v, "").lower() in ("1", "true", "yes")
                for v in ("KERAS_MODELS_NO_PROGRESS", "HF_HUB_DISABLE_PROGRESS_BARS"))
    if quiet or total < PROGRESS_MIN_BYTES:
        yield _NoBar()
        return
    from tqdm.auto import tqdm

    name = os.path.basename(str(source).rstrip("/")) or str(source)
    with tqdm(total=total, unit="B", unit_scale=True, desc=f"Loading {name}", file=sys.stderr, leave=False) as bar:
        yield bar


def export_rules(rules, *, prefix="", dtype=None):
    """Yield ``(hf_name, numpy array)`` for every exported rule."""
    seen = set()
    whole = {}  # id(variable) -> its numpy value, for the rules that export pieces of one variable
    for r in rules:
        if not r.export:
            continue
        name = (f"{prefix}.{r.hf}" if prefix else r.hf) if r.base else r.hf
        if name in seen:
            continue
        seen.add(name)
        if r.part is None:
            value = np.asarray(_to_numpy(r.variable))
        else:
            if id(r.variable) not in whole:
                whole[id(r.variable)] = np.asarray(_to_numpy(r.variable))
            value = whole[id(r.variable)][r.part]
        if dtype is not None:
            value = value.astype(dtype)
        # (np.ascontiguousarray would turn a 0-d tensor, e.g. CLIP's logit_scale, into shape (1,))
        yield name, np.require(r.op.to_hf(value), requirements="C")


def _piece_shape(shape, part):
    # index a zero-stride view of the variable's shape: no memory however large the variable is
    # (np.empty would reserve the whole size once per rule: 40k rules for a DeepSeek-V3 checkpoint)
    view = np.lib.stride_tricks.as_strided(np.zeros(1, np.bool_), shape=shape, strides=(0,) * len(shape))
    return view[part].shape if shape else ()


def _check_parts(rules, source):
    """The pieces of each variable filled by ``part`` rules must add up to it (a weight map error,
    not a checkpoint one: raised even when the checkpoint is complete)."""
    cover = {}
    for r in rules:
        if r.part is not None:
            c = cover.setdefault(id(r.variable), [r, 0])
            c[1] += int(np.prod(r.target_shape(), dtype=np.int64))
    for r, size in cover.values():
        if size != int(np.prod(tuple(r.variable.shape), dtype=np.int64)):
            raise WeightMismatchError(f"Cannot load weights from {source}: the checkpoint tensors mapped onto "
                                      f"pieces of {getattr(r.variable, 'path', r.variable)} (e.g. {r.hf}) do not "
                                      "add up to it")


def _float_compatible(stored, wanted):
    """Whether a checkpoint tensor of dtype ``stored`` may fill a variable of dtype ``wanted``: a
    float variable takes only float tensors (an int8 / bool tensor would be cast into garbage)."""
    stored, wanted = str(stored), str(wanted)
    float_names = ("float", "bfloat16", "half", "double")
    if any(n in wanted for n in float_names):
        return any(n in stored for n in float_names) or stored in ("F16", "F32", "F64", "BF16")
    return True


def _to_numpy(variable):
    import keras

    # a LoRA layer's kernel is a tensor (the base kernel plus its adapter), not a variable
    return keras.ops.convert_to_numpy(getattr(variable, "value", variable))


def _np_dtype(dtype):
    import ml_dtypes

    return np.dtype(ml_dtypes.bfloat16) if str(dtype) == "bfloat16" else np.dtype(str(dtype))


def _short(names, n=12):
    names = list(names)
    more = f" ... and {len(names) - n} more" if len(names) > n else ""
    return ", ".join(names[:n]) + more
