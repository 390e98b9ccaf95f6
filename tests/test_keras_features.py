"""Models are plain Keras models: summary, LoRA, int8 quantisation, dtype policies."""

import keras
import numpy as np

import keras_models as km
from tests.parity import assert_close_low_precision, to_numpy
from tests.presets.fixtures import tiny_classifier


def test_summary_and_parameter_count():
    folder, _, _ = tiny_classifier()
    model = km.TextClassifier.from_preset(folder)
    lines = []
    model.summary(print_fn=lambda line, *a, **k: lines.append(line))
    assert any("bert_backbone" in line.lower() or "backbone" in line.lower() for line in lines)
    from keras_models.presets.safetensors_io import CheckpointReader

    reader = CheckpointReader(folder)
    n_ckpt = sum(int(np.prod(reader.shape(k))) for k in reader.keys() if "position_ids" not in k)
    assert model.count_params() == n_ckpt


def test_lora_freezes_backbone_and_trains_adapters():
    folder, inputs, expected = tiny_classifier()
    model = km.TextClassifier.from_preset(folder)
    before = to_numpy(model(inputs))
    n = model.backbone.enable_lora(rank=2)
    assert n == 2 * model.backbone.num_layers if hasattr(model.backbone, "num_layers") else n > 0
    # LoRA starts as a no-op; only adapters (and the head) are trainable.
    np.testing.assert_allclose(to_numpy(model(inputs)), before, atol=1e-6)
    trainable = [w.path for w in model.backbone.trainable_weights]
    assert trainable and all("lora" in p for p in trainable)
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = {k: np.repeat(v, 4, axis=0) for k, v in inputs.items()}
    y = np.array([0, 2] * 4)
    frozen = to_numpy(model.backbone.token_embedding.embeddings).copy()
    hist = model.fit(x, y, epochs=3, batch_size=8, verbose=0)
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    np.testing.assert_array_equal(to_numpy(model.backbone.token_embedding.embeddings), frozen)


def test_int8_quantization_stays_close():
    folder, inputs, expected = tiny_classifier()
    model = km.TextClassifier.from_preset(folder)
    model.quantize("int8")
    assert_close_low_precision(model(inputs), expected, rel=0.05, what="int8 logits")


def test_task_build_does_not_trace_its_backbone_again(monkeypatch):
    """Building a task around a backbone built from its dummy inputs reuses the backbone's recorded
    output spec (one trace, not two: under TensorFlow each trace builds a graph op by op) and
    creates exactly the variables a full trace creates."""
    import contextlib
    import functools

    import keras_models.tasks.task as task_module

    folder, inputs, expected = tiny_classifier()
    backbone_cls = type(km.TextClassifier.from_preset(folder, load_weights=False).backbone)
    traces = []
    real_call = backbone_cls.call

    @functools.wraps(real_call)  # (Keras reads call()'s signature)
    def counting_call(self, *args, **kwargs):
        traces.append(1)
        return real_call(self, *args, **kwargs)

    monkeypatch.setattr(backbone_cls, "call", counting_call)

    def variables(model):
        return [(v.path.split("/", 1)[-1], tuple(v.shape)) for v in model.weights]  # (less the auto-numbered root)

    model = km.TextClassifier.from_preset(folder)
    assert len(traces) == 1
    np.testing.assert_allclose(to_numpy(model(inputs)), expected, atol=1e-4)
    traces.clear()
    monkeypatch.setattr(task_module, "stand_in_for", lambda layer: contextlib.nullcontext())
    full = km.TextClassifier.from_preset(folder)
    assert len(traces) == 2
    assert variables(full) == variables(model)
