"""Export for serving: ONNX under the torch backend (checked with ONNX Runtime at batch sizes and
sequence lengths other than the traced ones), TF SavedModel under JAX and TensorFlow (reloaded
with tf.saved_model.load), and clear errors for the combinations a backend cannot do."""

import keras
import numpy as np
import pytest

import keras_models as km
from keras_models.export import ExportError
from tests.parity import to_numpy
from tests.presets.fixtures import tiny_classifier

BACKEND = keras.backend.backend()
torch_only = pytest.mark.skipif(BACKEND != "torch", reason="ONNX export runs under the torch backend")


def _ids(batch, length, seed):
    rng = np.random.RandomState(seed)
    ids = rng.randint(5, 20, size=(batch, length)).astype("int32")
    mask = np.ones_like(ids)
    mask[0, length - 2:] = 0  # a padded row
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


@torch_only
def test_onnx_text_models_with_dynamic_axes(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    folder, _, _ = tiny_classifier()
    model = km.TextClassifier.from_preset(folder)
    path = model.export(tmp_path / "classifier.onnx", format="onnx")
    session = ort.InferenceSession(str(path))
    assert sorted(i.name for i in session.get_inputs()) == ["attention_mask", "input_ids", "token_type_ids"]
    for batch, length in ((3, 5), (1, 11)):  # neither is the traced (2, 8)
        feed = _ids(batch, length, seed=length)
        (logits,) = session.run(None, feed)
        np.testing.assert_allclose(logits, to_numpy(model(feed)), atol=1e-5)
    # a dict-output model: outputs named after its keys
    qa = km.QuestionAnswerer.from_preset(folder)
    path = km.export.export_onnx(qa, tmp_path / "qa.onnx")
    session = ort.InferenceSession(str(path))
    feed = _ids(2, 6, seed=0)
    ours = {k: to_numpy(v) for k, v in qa(feed).items()}
    names = [o.name for o in session.get_outputs()]
    assert names == list(ours)
    for name, value in zip(names, session.run(None, feed)):
        np.testing.assert_allclose(value, ours[name], atol=1e-5, err_msg=name)


@torch_only
def test_onnx_image_classifier(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from tests.vision.test_vit_family import _vit
    from tests.vision.vision_parity import pixels, vision_reference

    folder, _ = vision_reference("vit-ViTForImageClassification", lambda: _vit("ViTForImageClassification"),
                                 pixels(2, 32, 32, 3))
    model = km.ImageClassifier.from_preset(folder)
    path = model.export(tmp_path / "vit.onnx", format="onnx")
    x = pixels(3, 32, 32, 3, seed=4)
    (logits,) = ort.InferenceSession(str(path)).run(None, {"pixel_values": x})
    np.testing.assert_allclose(logits, to_numpy(model.predict_on_batch(x)), atol=1e-5)


@torch_only
def test_export_errors_name_the_fix(tmp_path):
    folder, _, _ = tiny_classifier()
    model = km.TextClassifier.from_preset(folder)
    with pytest.raises(ExportError, match="torch_xla"):
        model.export(tmp_path / "saved", format="tf_saved_model")
    with pytest.raises(km.errors.InputError, match="dict of arrays"):
        km.export.export_onnx(model, tmp_path / "x.onnx", inputs=[1, 2])
    assert not list(tmp_path.iterdir())  # nothing half-written


@pytest.mark.skipif(BACKEND == "torch", reason="SavedModel export needs jax or tensorflow (torch needs torch_xla)")
def test_saved_model_with_open_sequence_axis(tmp_path):
    tf = pytest.importorskip("tensorflow")
    folder, _, _ = tiny_classifier()
    model = km.TextClassifier.from_preset(folder)
    model.export(str(tmp_path / "saved"), format="tf_saved_model", verbose=False)
    loaded = tf.saved_model.load(str(tmp_path / "saved"))  # kept alive: it owns the variables
    serve = loaded.serve
    for batch, length in ((3, 5), (1, 11)):
        feed = _ids(batch, length, seed=length)
        np.testing.assert_allclose(np.asarray(serve(feed)), to_numpy(model(feed)), atol=1e-5)
    with pytest.raises(ExportError, match="KERAS_BACKEND=torch"):
        model.export(tmp_path / "m.onnx", format="onnx")


def _onnx_greedy(session, buffers, prompt, max_length, new_tokens):
    """Greedy decoding through an exported decode step: the prompt fed token by token, then each
    generated token, with the cache buffers fed back."""
    inputs = session.get_inputs()
    mask = np.ones((prompt.shape[0], max_length), np.int32)
    out, position = [], 0
    step = prompt[:, :1]
    for position in range(prompt.shape[1] + new_tokens - 1):
        feed = {"input_ids": step.astype(np.int32), "attention_mask": mask, "cache_index": np.array(position, np.int32)}
        feed.update({i.name: b for i, b in zip(inputs[3:], buffers)})
        logits, *buffers = session.run(None, feed)
        if position + 1 < prompt.shape[1]:
            step = prompt[:, position + 1:position + 2]
        else:
            step = logits[:, -1].argmax(-1)[:, None]
            out.append(step[:, 0])
    return np.stack(out, 1)


@torch_only
@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_onnx_decoder_with_kv_cache_reproduces_greedy_generate(tmp_path, family):
    ort = pytest.importorskip("onnxruntime")
    from tests.generation.helpers import reference

    folder, _ = reference(family, [])
    lm = km.CausalLM.from_preset(folder)
    path = lm.export(tmp_path / "step.onnx", format="onnx", max_length=16)
    session = ort.InferenceSession(str(path))
    names = [i.name for i in session.get_inputs()]
    assert names[:3] == ["input_ids", "attention_mask", "cache_index"] and names[3] == "past_0"
    prompt = np.array([[5, 6, 7, 8, 9], [11, 12, 13, 14, 15], [21, 22, 23, 24, 25]], np.int32)  # batch 3, traced at 2
    expected = to_numpy(lm.generate({"input_ids": prompt, "attention_mask": np.ones_like(prompt)},
                                    max_new_tokens=4, do_sample=False))[:, prompt.shape[1]:]
    zeros = [to_numpy(x) for x in keras.tree.flatten(lm.init_cache(prompt.shape[0], 16))]  # the empty cache
    np.testing.assert_array_equal(_onnx_greedy(session, zeros, prompt, 16, 4), expected)
