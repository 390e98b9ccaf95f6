"""Importing and using keras-models under jax or torch (loading, tokenizing, a .keras save and load)
never imports TensorFlow."""

import os
import subprocess
import sys

from tests.parity import REPO

SCRIPT = """
import sys
import keras_models as km
km.Backbone, km.TextClassifier, km.Tokenizer, km.TextEmbedder
import keras_models.models
from keras_models.presets.resolve import resolve_preset
folder = resolve_preset("all-minilm-l6-v2")
tok = km.Tokenizer.from_preset(folder)
tok(["hello world"])
# a .keras save and load (Keras' serializer asks about TensorFlow types: keras_models.compat)
import os, tempfile, keras
tiny = km.models.BertBackbone(vocab_size=30, hidden_size=8, num_layers=1, num_heads=2, intermediate_size=8,
                              max_position_embeddings=8)
tiny.build_from_dummy()
path = os.path.join(tempfile.mkdtemp(), "m.keras")
tiny.save(path)
assert type(keras.saving.load_model(path)) is type(tiny)
bad = sorted(m for m in sys.modules if m == "tensorflow" or m.startswith("tensorflow."))
assert not bad, bad[:5]
print("ok")
"""


def test_no_tensorflow_import():
    # The tensorflow run checks jax: each backend run spends one subprocess here.
    current = os.environ.get("KERAS_BACKEND", "jax")
    backend = current if current in ("jax", "torch") else "jax"
    env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-2000:]


def test_tokenizers_import_without_keras():
    script = "import sys, keras_models.tokenizers; assert 'keras' not in sys.modules; print('ok')"
    proc = subprocess.run([sys.executable, "-c", script], env=dict(os.environ, PYTHONPATH=str(REPO)),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
