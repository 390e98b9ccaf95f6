"""Feed raw data (strings, pairs, images...) through a task's preprocessor on the host.

A ``keras.utils.PyDataset`` calls ``preprocessor(x_batch, y_batch)`` per batch and hands numpy
arrays to Keras, so no tf.data (and no TensorFlow) is involved under JAX or PyTorch.

Preprocessor contract: ``preprocessor(x, y=None)`` returns the feature dict when ``y`` is None and
``(features, y)`` otherwise (self-supervised preprocessors, masked and causal LM, return
``(features, labels, weights)``); ``x`` is a list of raw samples. A preprocessor whose batches vary
in shape (text padded to each batch's longest sample) says so with ``variable_shapes = True``.

Raw data arrives as a list / numpy array of samples (``RawDataAdapter``: batching, shuffling,
``sample_weight``), as a ``keras.utils.PyDataset``, a Python generator or a ``tf.data.Dataset``
yielding batches of raw samples (``adapt_stream``: each batch is preprocessed as it comes), or as a
Hugging Face ``datasets.Dataset`` (``table_columns``: its string / image columns are the inputs and
its ``label`` / ``labels`` column the targets).

While training (fit / evaluate: not predict), text batches padded to their longest sample are
rounded up to a length bucket (16, 32, 64 ... up to the preprocessor's sequence_length,
``preprocessing.text_base.length_buckets``), so JAX and TensorFlow compile a few train steps, not
one per batch length; the extra padding is masked.

Under TensorFlow, Keras feeds a PyDataset or a generator through ``tf.data.Dataset.from_generator``
with a signature read off the first two batches: when those happen to share a length, a later,
shorter batch fails. For variable-shape preprocessors the tf.data pipeline is therefore built here
with every non-batch axis left open (``open_tf_dataset``).
"""

import itertools
import math

import keras
import numpy as np

from keras_models.errors import InputError
from keras_models.preprocessing.text_base import length_buckets


def preprocess_batch(preprocessor, xb, yb=None, swb=None, inference=False):
    """One batch of raw samples -> the tuple Keras trains on: ``(features,)``, ``(features, y)`` or
    ``(features, y, sample_weight)``. A per-sample ``swb`` scales a self-supervised preprocessor's
    per-token weights."""
    if inference and yb is None:
        # Inference features only (no dynamic masking / label building).
        features = getattr(preprocessor, "features", preprocessor)
        return (features(xb),)
    with length_buckets():
        out = preprocessor(xb) if yb is None else preprocessor(xb, yb)
    out = out if isinstance(out, tuple) else (out,)
    if swb is None:
        return out
    swb = np.asarray(swb, dtype="float32")
    if len(out) == 1:
        raise InputError("sample_weight was given without targets (y), and this task's preprocessor "
                         "builds no labels of its own: pass y as well")
    if len(out) == 2:
        return out + (swb,)
    weights = np.asarray(out[2], dtype="float32")
    return out[:2] + (weights * swb.reshape((-1,) + (1,) * (weights.ndim - 1)),)


def is_raw(x):
    """True for raw samples (strings, string pairs, PIL images, or dict samples holding them, such as
    a document page ``{"image", "words", "boxes"}``) rather than arrays / tensors."""
    if isinstance(x, (str, bytes)):
        return True
    if isinstance(x, np.ndarray):
        return x.dtype.kind in ("U", "S", "O")
    if isinstance(x, (list, tuple)) and len(x) > 0:
        first = x[0]
        if isinstance(first, (str, bytes)):
            return True
        if isinstance(first, (tuple, list)) and first and isinstance(first[0], str):
            return True
        if isinstance(first, dict):  # a list of samples with named raw fields (a list is never a tensor)
            return any(is_raw(v) or isinstance(v, (list, tuple)) for v in first.values())
        return type(first).__module__.startswith("PIL")
    return False


def _decode(x):
    """bytes and numpy string arrays (what tf.data yields for strings) -> Python strings; text pairs
    given column-wise (a tuple of two string arrays, as tf.data batches ``(texts_a, texts_b)``) ->
    row-wise pairs."""
    if isinstance(x, bytes):
        return x.decode("utf-8")
    if isinstance(x, np.ndarray) and x.dtype.kind in ("S", "O", "U"):
        return [_decode(v) for v in x.tolist()]
    if isinstance(x, dict):  # named columns
        x = tuple(x.values())
        x = x[0] if len(x) == 1 else x
    if isinstance(x, (list, tuple)) and x and all(isinstance(c, np.ndarray) and c.ndim == 1 for c in x):
        columns = [_decode(c) for c in x]
        return list(zip(*columns)) if len(columns) > 1 else columns[0]
    return x


def _split_batch(batch):
    """A stream element -> (x, y, sample_weight), as Keras reads generator / PyDataset batches."""
    if isinstance(batch, tuple) and 1 <= len(batch) <= 3:
        return (tuple(batch) + (None, None))[:3]
    return batch, None, None


def open_tf_dataset(batches, first, cardinality=None):
    """A tf.data.Dataset over ``batches()`` (a callable returning an iterator of numpy batch
    tuples, re-called every epoch) whose signature leaves every non-batch axis open."""
    import tensorflow as tf

    def open_spec(a):
        a = np.asarray(a)
        return tf.TensorSpec(shape=(None,) * a.ndim, dtype=tf.as_dtype(a.dtype))

    signature = keras.tree.map_structure(open_spec, first)
    ds = tf.data.Dataset.from_generator(batches, output_signature=signature)
    if cardinality is not None:
        ds = ds.apply(tf.data.experimental.assert_cardinality(cardinality))
    return ds.prefetch(2)


def _open_shapes(preprocessor):
    return keras.backend.backend() == "tensorflow" and getattr(preprocessor, "variable_shapes", False)


class _MappedPyDataset(keras.utils.PyDataset):
    """A user's PyDataset of raw batches, each preprocessed as Keras asks for it."""

    def __init__(self, source, preprocessor, inference=False):
        super().__init__(workers=getattr(source, "workers", 1),
                         use_multiprocessing=getattr(source, "use_multiprocessing", False),
                         max_queue_size=getattr(source, "max_queue_size", 10))
        self.source, self.preprocessor, self.inference = source, preprocessor, inference

    def __len__(self):
        return len(self.source)

    @property
    def num_batches(self):
        return self.source.num_batches

    def __getitem__(self, i):
        return _preprocess_element(self.source[i], self.preprocessor, self.inference)

    def on_epoch_begin(self):
        self.source.on_epoch_begin()

    def on_epoch_end(self):
        self.source.on_epoch_end()


def _preprocess_element(element, preprocessor, inference):
    x, y, sw = _split_batch(element)
    return preprocess_batch(preprocessor, _decode(x), y, sw, inference)


def _tf_string_dataset(x):
    if type(x).__module__.split(".")[0] != "tensorflow" or not hasattr(x, "element_spec"):
        return False
    first = keras.tree.flatten(x.element_spec)[0]  # the inputs come first: (x, y, sample_weight)
    return getattr(first, "dtype", None) is not None and first.dtype.name == "string"


def adapt_stream(x, preprocessor, inference=False, need=None):
    """A PyDataset, generator / iterator or tf.data.Dataset yielding batches of raw samples ->
    ``(batches, x)`` where ``batches`` is what Keras consumes (the batches preprocessed), or None
    when ``x`` is not a stream of raw samples; ``x`` is handed back (a generator whose first batch
    was read to tell is restored). ``need(sample)`` is called before raw samples are preprocessed
    (it raises when there is no preprocessor)."""
    need = need or (lambda sample: None)
    if isinstance(x, keras.utils.PyDataset):
        if len(x) == 0 or not is_raw(_split_batch(x[0])[0]):
            return None, x
        need(_split_batch(x[0])[0])
        mapped = _MappedPyDataset(x, preprocessor, inference)
        if not _open_shapes(preprocessor):
            return mapped, x

        def epoch():
            mapped.on_epoch_begin()
            for i in range(len(mapped)):
                yield mapped[i]
            mapped.on_epoch_end()

        return open_tf_dataset(epoch, mapped[0], len(mapped)), x
    if _tf_string_dataset(x):  # re-iterated every epoch, on any backend (TensorFlow is installed)
        need("tf.string")
        def epoch():
            for element in x.as_numpy_iterator():
                yield _preprocess_element(element, preprocessor, inference)

        cardinality = int(x.cardinality())
        return open_tf_dataset(epoch, next(epoch()), cardinality if cardinality >= 0 else None), x
    if hasattr(x, "__next__") and not isinstance(x, (str, bytes, np.ndarray)):
        try:
            head = next(x)
        except StopIteration:
            raise InputError("the data generator yielded no batch") from None
        x = itertools.chain([head], x)
        if not is_raw(_split_batch(head)[0]):
            return None, x
        need(_split_batch(head)[0])
        # one pass, as Keras reads a generator (loop it or pass steps_per_epoch for several epochs)
        batches = (_preprocess_element(element, preprocessor, inference) for element in x)
        if not _open_shapes(preprocessor):
            return batches, x
        first = next(batches)
        return open_tf_dataset(lambda: itertools.chain([first], batches), first), x
    return None, x


def table_columns(x, y=None):
    """A Hugging Face ``datasets.Dataset`` (or anything with ``column_names`` returning columns by
    name) -> ``(samples, labels)``: its text or image columns are the inputs (two text columns
    make sentence pairs) and its ``label`` / ``labels`` column the targets. A table already
    tokenised (only numeric columns: ``input_ids``, ``attention_mask``, ...) gives a dict of arrays
    instead. None when ``x`` is not such a table."""
    names = getattr(x, "column_names", None)
    if not isinstance(names, (list, tuple)) or not hasattr(x, "__getitem__") or isinstance(x, dict):
        return None
    label_cols = [c for c in ("label", "labels") if c in names]
    if y is None and label_cols:
        y = list(x[label_cols[0]])
    inputs = [c for c in names if c not in label_cols]
    sample = x[0] if len(x) else {}
    usable = [c for c in inputs if isinstance(sample.get(c), str) or
              type(sample.get(c)).__module__.startswith("PIL")]
    numeric = [c for c in inputs if isinstance(sample.get(c), (int, float, list, np.ndarray))]
    if not usable and numeric and len(numeric) == len(inputs):
        try:
            features = {c: np.asarray(list(x[c])) for c in numeric}
        except ValueError as e:
            raise InputError(f"the tokenised columns of this {type(x).__name__} ({numeric}) differ in length "
                             "from sample to sample: pad them (padding='max_length') or pass raw text") from e
        return features, None if y is None else np.asarray(y)
    if not usable or len(usable) > 2:
        raise InputError(
            f"cannot tell the input column(s) of this {type(x).__name__}: columns {list(names)}; "
            f"expected one text or image column (or two text columns for pairs) besides 'label'. "
            "Select them first, e.g. dataset.select_columns(['text', 'label'])")
    cols = [list(x[c]) for c in usable]
    samples = cols[0] if len(cols) == 1 else list(zip(*cols))
    return samples, y


def split_raw(x, y, sample_weight, validation_split):
    """``fit(validation_split=)`` on raw samples: the last ``validation_split`` of them (as Keras
    splits arrays, before any shuffling) -> ``(x, y, sample_weight, validation_data)``."""
    if not 0.0 < float(validation_split) < 1.0:
        raise InputError(f"validation_split must be between 0 and 1, got {validation_split!r}")
    x = [x] if isinstance(x, str) else list(x)
    n_train = int(math.floor(len(x) * (1.0 - float(validation_split))))  # Keras' own rule
    if n_train == 0 or n_train == len(x):
        raise InputError(f"validation_split={validation_split} of {len(x)} samples leaves an empty "
                         f"{'training' if n_train == 0 else 'validation'} set")

    def cut(a):
        return (None, None) if a is None else (a[:n_train], a[n_train:])

    (xt, xv), (yt, yv), (wt, wv) = cut(x), cut(y), cut(sample_weight)
    validation = (xv,) if yv is None else (xv, yv) if wv is None else (xv, yv, wv)
    return xt, yt, wt, validation


class RawDataAdapter(keras.utils.PyDataset):
    def __init__(self, x, y, preprocessor, batch_size=32, shuffle=False, seed=None, inference=False,
                 sample_weight=None):
        super().__init__()
        self.inference = inference
        if isinstance(x, str):
            x = [x]
        self.x = list(x)
        self.y = None if y is None else np.asarray(y) if not isinstance(y, list) else y
        if self.y is not None and len(self.y) != len(self.x):
            raise InputError(f"x has {len(self.x)} samples but y has {len(self.y)}")
        self.sample_weight = None if sample_weight is None else np.asarray(sample_weight, dtype="float32")
        if self.sample_weight is not None and len(self.sample_weight) != len(self.x):
            raise InputError(f"x has {len(self.x)} samples but sample_weight has {len(self.sample_weight)}")
        self.preprocessor = preprocessor
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self._rng = np.random.default_rng(seed)
        self._order = np.arange(len(self.x))
        if shuffle:
            self._rng.shuffle(self._order)

    is_raw = staticmethod(is_raw)

    @property
    def num_batches(self):
        return math.ceil(len(self.x) / self.batch_size)

    def __len__(self):
        return self.num_batches

    def __getitem__(self, i):
        idx = self._order[i * self.batch_size : (i + 1) * self.batch_size]
        xb = [self.x[j] for j in idx]
        yb = None if self.y is None else [self.y[j] for j in idx] if isinstance(self.y, list) else self.y[idx]
        swb = None if self.sample_weight is None else self.sample_weight[idx]
        return preprocess_batch(self.preprocessor, xb, yb, swb, self.inference)

    def as_dataset(self):
        """What to hand to Keras: this PyDataset, or under TensorFlow with variable-shape batches a
        ``tf.data.Dataset`` whose signature leaves every axis open."""
        if not _open_shapes(self.preprocessor):
            return self

        def batches():
            for i in range(len(self)):
                yield self[i]
            self.on_epoch_end()

        return open_tf_dataset(batches, self[0], len(self))

    def on_epoch_end(self):
        if self.shuffle:
            self._rng.shuffle(self._order)
