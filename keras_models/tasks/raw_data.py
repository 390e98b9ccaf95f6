"""Feed raw data (strings, pairs, images...) through a task's preprocessor on the host.

A ``keras.utils.PyDataset`` calls ``preprocessor(x_batch, y_batch)`` per batch and hands numpy
arrays to Keras, so no tf.data (and no TensorFlow) is involved under JAX or PyTorch.

Preprocessor contract: ``preprocessor(x, y=None)`` returns the feature dict when ``y`` is None and
``(features, y)`` otherwise; ``x`` is a list of raw samples. A preprocessor whose batches vary in
shape (text padded to each batch's longest sample) says so with ``variable_shapes = True``.

While training (fit / evaluate: not predict), text batches padded to their longest sample are
rounded up to a length bucket (16, 32, 64 ... up to the preprocessor's sequence_length,
``preprocessing.text_base.length_buckets``), so JAX and TensorFlow compile a few train steps, not
one per batch length; the extra padding is masked.

Under TensorFlow, Keras feeds a PyDataset through ``tf.data.Dataset.from_generator`` with a
signature read off the first two batches: when those happen to share a length, a later, shorter
batch fails. For variable-shape preprocessors ``as_dataset`` therefore builds the tf.data pipeline
itself with every non-batch axis left open.
"""

import math

import keras
import numpy as np

from keras_models.preprocessing.text_base import length_buckets


class RawDataAdapter(keras.utils.PyDataset):
    def __init__(self, x, y, preprocessor, batch_size=32, shuffle=False, seed=None, inference=False):
        super().__init__()
        self.inference = inference
        if isinstance(x, str):
            x = [x]
        self.x = list(x)
        self.y = None if y is None else np.asarray(y) if not isinstance(y, list) else y
        if self.y is not None and len(self.y) != len(self.x):
            raise ValueError(f"x has {len(self.x)} samples but y has {len(self.y)}")
        self.preprocessor = preprocessor
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self._rng = np.random.default_rng(seed)
        self._order = np.arange(len(self.x))
        if shuffle:
            self._rng.shuffle(self._order)

    @staticmethod
    def is_raw(x):
        if isinstance(x, str):
            return True
        if isinstance(x, np.ndarray):
            return x.dtype.kind in ("U", "S", "O")
        if isinstance(x, (list, tuple)) and len(x) > 0:
            first = x[0]
            if isinstance(first, str):
                return True
            if isinstance(first, (tuple, list)) and first and isinstance(first[0], str):
                return True
            return type(first).__module__.startswith("PIL")
        return False

    @property
    def num_batches(self):
        return math.ceil(len(self.x) / self.batch_size)

    def __len__(self):
        return self.num_batches

    def __getitem__(self, i):
        idx = self._order[i * self.batch_size : (i + 1) * self.batch_size]
        xb = [self.x[j] for j in idx]
        if self.y is None:
            if self.inference:
                # Inference features only (no dynamic masking / label building).
                features = getattr(self.preprocessor, "features", self.preprocessor)
                return (features(xb),)
            with length_buckets():
                out = self.preprocessor(xb)
            # Self-supervised preprocessors (masked / causal LM) build (features, labels, weights).
            return out if isinstance(out, tuple) else (out,)
        yb = [self.y[j] for j in idx] if isinstance(self.y, list) else self.y[idx]
        with length_buckets():
            return self.preprocessor(xb, yb)

    def as_dataset(self):
        """What to hand to Keras: this PyDataset, or under TensorFlow with variable-shape batches a
        ``tf.data.Dataset`` whose signature leaves every axis open."""
        if keras.backend.backend() != "tensorflow" or not getattr(self.preprocessor, "variable_shapes", False):
            return self
        import tensorflow as tf

        def open_spec(a):
            a = np.asarray(a)
            return tf.TensorSpec(shape=(None,) * a.ndim, dtype=tf.as_dtype(a.dtype))

        signature = keras.tree.map_structure(open_spec, self[0])

        def batches():
            for i in range(len(self)):
                yield self[i]
            self.on_epoch_end()

        ds = tf.data.Dataset.from_generator(batches, output_signature=signature)
        return ds.apply(tf.data.experimental.assert_cardinality(len(self))).prefetch(2)

    def on_epoch_end(self):
        if self.shuffle:
            self._rng.shuffle(self._order)
