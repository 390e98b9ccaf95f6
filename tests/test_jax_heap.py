"""XLA:CPU temporaries kept in the heap (backend_choice, KM_JAX_HEAP_TEMPS): with the switch on, a
training step whose temporary buffer is larger than glibc's mmap threshold (32 MB) re-uses its
pages on the next step instead of faulting them in again, with the same losses; with the switch off, or when jax's backend
existed before the model module was imported, jax and the allocator are left alone. Subprocesses:
jax reads its dispatch setting once, when it creates its CPU client."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = [
    pytest.mark.skipif(os.environ.get("KERAS_BACKEND") != "jax", reason="a jax CPU setting"),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator"),
]

PROBE = """
import json, resource, sys
import numpy as np
import jax, jax.numpy as jnp
if sys.argv[1] == "early":
    jnp.zeros(1).block_until_ready()  # jax's CPU client exists before the model module
import keras, keras_models as km

# a 104,000-token vocabulary: the embedding's gradient (40 MB) lives in XLA's temporary buffer
tiny = dict(vocab_size=104000, hidden_size=96, num_layers=1, num_heads=2, intermediate_size=32,
            max_position_embeddings=16, dropout=0.0, attention_dropout=0.0)
keras.utils.set_random_seed(0)
model = km.models.BertTextClassifier(km.models.BertBackbone(**tiny), num_classes=2)
model.compile(optimizer=keras.optimizers.SGD(0.1),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
ids = np.random.RandomState(0).randint(3, 104000, size=(4, 8)).astype("int32")
x, y = {"input_ids": ids, "attention_mask": np.ones_like(ids)}, np.array([0, 1, 0, 1])
model.fit(x, y, batch_size=4, epochs=1, verbose=0)
faults, losses = [], []
for _ in range(3):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    losses.append(model.fit(x, y, batch_size=4, epochs=1, verbose=0).history["loss"][0])
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
from keras_models.backend_choice import _HEAP
print(json.dumps({"applied": _HEAP["applied"], "async": jax.config.read("jax_cpu_enable_async_dispatch"),
                  "faults": min(faults), "losses": losses}))
"""


def _probe(mode, switch):
    env = dict(os.environ, KERAS_BACKEND="jax", KM_JAX_HEAP_TEMPS=switch, JAX_PLATFORMS="cpu")
    done = subprocess.run([sys.executable, "-c", PROBE, mode], env=env, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_temporaries_stay_in_the_heap_only_with_the_switch():
    on, off, early = _probe("late", "1"), _probe("late", "0"), _probe("early", "1")
    assert on["applied"] and not on["async"]
    assert not off["applied"] and off["async"] and not early["applied"] and early["async"]
    assert on["losses"] == off["losses"] == early["losses"]  # the same steps, bit for bit
    # the 40 MB gradient alone is 9,750 pages: off, each step faults them in again; on, reused
    assert off["faults"] > 9750 and early["faults"] > 9750, (off, early)
    assert on["faults"] < 2000, on
