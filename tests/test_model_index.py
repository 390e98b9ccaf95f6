"""Families load on demand (keras_models/models/_index.py, tools/gen_model_index.py): the committed
index is what the code registers, and a program imports only the families it names, with the same
classes, tasks and errors as with everything imported. Subprocesses: each needs a fresh import."""

import os
import subprocess
import sys

import pytest

from tests.parity import REPO

pytestmark = pytest.mark.backend_independent  # import bookkeeping; no tensor math


def _run(args, timeout=300):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=timeout,
                          cwd=REPO)
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-3000:])
    return done.stdout


def test_index_matches_the_registrations():
    assert "is up to date" in _run(["tools/gen_model_index.py", "--check"])


LAZY = r"""
import sys
import keras_models as km
from keras_models.errors import UnknownArchitectureError
from keras_models.models import registry

def loaded(family):
    return f"keras_models.models.{family}" in sys.modules

km.CausalLM, km.TextClassifier, km.Backbone
assert not any(loaded(f) for f in ("bert", "decoder", "whisper", "clip")), "a task class imported families"

# a model_type loads its family only, with every task registered for it
bert = registry.backbone_for_config({"model_type": "bert"})
assert bert.__name__ == "BertBackbone" and loaded("bert") and not loaded("whisper")
assert {"MaskedLM", "TextClassifier", "TokenClassifier", "QuestionAnswerer"} <= set(bert.tasks), sorted(bert.tasks)
assert registry.task_class_for(bert, "TextClassifier").__name__ == "BertTextClassifier"

# an architecture alone (no model_type) finds its family through the index
t5 = registry.backbone_for_config({"architectures": ["T5ForConditionalGeneration"]})
assert t5.__name__ == "T5Backbone", t5

# attribute access imports the family that exports the name; dir lists names not imported yet
assert "WhisperBackbone" in dir(km.models) and not loaded("whisper")
whisper = km.models.WhisperBackbone
assert loaded("whisper") and registry.backbone_for_config({"model_type": "whisper"}) is whisper
from keras_models.models import CLIPBackbone
assert CLIPBackbone is registry.backbone_for_config({"model_type": "clip"})
assert km.models.bert is sys.modules["keras_models.models.bert"]
try:
    km.models.NoSuchBackbone
except AttributeError as e:
    assert "NoSuchBackbone" in str(e)
else:
    raise AssertionError("no AttributeError")

# a family the index does not know (added without regenerating it) is still found, by a full import
index = registry._index()
del index.MODEL_TYPES["rwkv"]
index.ARCHITECTURES = {k: v for k, v in index.ARCHITECTURES.items() if v != "rwkv"}
assert not loaded("rwkv")
assert registry.backbone_for_config({"model_type": "rwkv"}).__name__ == "RwkvBackbone" and loaded("rwkv")

# an unknown model type names every supported one
try:
    registry.backbone_for_config({"model_type": "not-a-model"}, source="x/config.json")
except UnknownArchitectureError as e:
    assert "x/config.json" in str(e) and "'not-a-model'" in str(e) and "whisper" in str(e) and "bert" in str(e)
else:
    raise AssertionError("no error")
assert set(registry.registered_model_types()) >= set(index.MODEL_TYPES) | {"rwkv"}
print("ok")
"""


def test_families_load_on_demand():
    assert "ok" in _run(["-c", LAZY])
