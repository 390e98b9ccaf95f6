"""Tensor parallelism through Keras' ModelParallel with our layout maps, on 8 virtual JAX CPU
devices (a 2 x 4 batch x model mesh, in a subprocess: the device count is fixed when JAX starts).
An encoder classifier and a decoder LM give the same loss, and the same loss after a training
step, as on one device; their kernels really are split over the model axis."""

import os
import subprocess
import sys
import textwrap

import pytest

from tests.generation.helpers import reference
from tests.parity import REPO
from tests.presets.fixtures import tiny_classifier


def test_model_parallel_matches_one_device(tmp_path):
    pytest.importorskip("jax")
    bert, _, _ = tiny_classifier()
    llama, _ = reference("llama", [])
    script = textwrap.dedent(
        f"""
        import numpy as np, keras, keras_models as km
        devices = keras.distribution.list_devices()
        assert len(devices) == 8, devices
        mesh = keras.distribution.DeviceMesh((2, 4), ["batch", "model"], devices)
        texts = ["the service was slow", "good food", "a fine evening out", "bad"]

        def losses(cls, folder, *data):
            model = cls.from_preset(folder)
            for layer in model._flatten_layers():
                if isinstance(layer, keras.layers.Dropout):
                    layer.rate = 0.0
            model.compile(optimizer=keras.optimizers.SGD(0.5), loss=model.default_loss())
            before = model.evaluate(*data, batch_size=2, verbose=0)
            model.fit(*data, batch_size=2, epochs=1, shuffle=False, verbose=0)
            return model, before, model.evaluate(*data, batch_size=2, verbose=0)

        for cls, folder, data, kernel in (
                (km.TextClassifier, {str(bert)!r}, (texts, np.array([0, 1, 2, 1])), "block_0/attention/query/kernel"),
                (km.CausalLM, {str(llama)!r}, (texts,), "block_0/mlp/down/kernel")):
            _, single_before, single_after = losses(cls, folder, *data)
            layout_map = cls.get_layout_map(mesh, preset=folder)
            keras.distribution.set_distribution(
                keras.distribution.ModelParallel(layout_map=layout_map, batch_dim_name="batch"))
            model, before, after = losses(cls, folder, *data)
            keras.distribution.set_distribution(None)
            sharded = [w for w in model.weights if w.path.endswith(kernel)]
            assert sharded, [w.path for w in model.weights][:20]
            spec = tuple(sharded[0].value.sharding.spec)
            assert "model" in spec, (kernel, spec)
            # the map made from the class applies to the loaded instance's own paths too
            assert len(model.get_layout_map(mesh)) == len(layout_map)
            np.testing.assert_allclose(before, single_before, rtol=1e-4)
            np.testing.assert_allclose(after, single_after, rtol=1e-4)
            assert abs(after - before) > 1e-3, (before, after)  # the step changed the weights
            print(cls.__name__, "OK", single_before, single_after, before, after)
        """
    )
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=str(REPO),
               XLA_FLAGS="--xla_force_host_platform_device_count=8")
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.count(" OK ") == 2, proc.stdout
