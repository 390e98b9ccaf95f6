"""ConvNet families (ConvNeXT, ConvNeXT V2, ResNet...): backbone feature map and classifier
parity at two resolutions under the current Keras backend."""

import pytest

import keras_models as km
from tests.parity import assert_close
from tests.vision.vision_parity import assert_task_close, hf_hidden_to_ours, pixels, run, vision_reference


def _convnext(cls):
    import transformers

    cfg = transformers.ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 2], num_stages=2, num_labels=3,
                                      layer_scale_init_value=0.5, layer_norm_eps=1e-6, patch_size=2)
    return getattr(transformers, cls)(cfg)


def _convnextv2(cls):
    import transformers

    cfg = transformers.ConvNextV2Config(hidden_sizes=[8, 12, 16], depths=[1, 1, 1], num_stages=3,
                                        num_labels=3, hidden_act="gelu_new")
    return getattr(transformers, cls)(cfg)


def _resnet(cls):
    import transformers

    cfg = transformers.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 24], depths=[1, 2, 1],
                                    num_labels=3, layer_type="bottleneck")
    return getattr(transformers, cls)(cfg)


def _resnet_basic(cls):
    import transformers

    cfg = transformers.ResNetConfig(embedding_size=8, hidden_sizes=[8, 12], depths=[2, 1], num_labels=4,
                                    layer_type="basic", downsample_in_first_stage=True)
    return getattr(transformers, cls)(cfg)


FAMILIES = {
    "convnext": (_convnext, "ConvNext"),
    "convnextv2": (_convnextv2, "ConvNextV2"),
    "resnet": (_resnet, "ResNet"),
    "resnet_basic": (_resnet_basic, "ResNet"),
}


@pytest.mark.one_case_per_pass("head")
@pytest.mark.parametrize("head", ["Model", "ForImageClassification"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_parity(family, head):
    builder, prefix = FAMILIES[family]
    size = (48, 40) if head == "Model" else (32, 32)
    x = pixels(2, *size)
    folder, expected = vision_reference(f"{family}-{head}", lambda: builder(prefix + head), x)
    if head == "Model":
        model = km.Backbone.from_preset(folder)
        assert_close(run(model, x), hf_hidden_to_ours(expected["last_hidden_state"]),
                     what=f"{family} {size}")
    else:
        model = km.ImageClassifier.from_preset(folder)
        assert model.head_from_checkpoint
        assert_task_close(model, x, expected, what=f"{family} {size}")


def test_resnet_trains_with_batch_statistics():
    """A ResNet classifier in training mode normalises with the batch's statistics as Transformers'
    ``model.train()`` does (logits within 1e-4), and ``train_on_batch`` updates its weights and its
    BatchNorm moving statistics on every backend (under torch this went through the fused batch
    norm kernel, which refused batch moments that autograd differentiates)."""
    import keras
    import numpy as np
    import torch
    import transformers

    x = pixels(2, 32, 32)
    folder, _ = vision_reference("resnet-ForImageClassification", lambda: _resnet("ResNetForImageClassification"), x)
    hf = transformers.ResNetForImageClassification.from_pretrained(folder).train()
    with torch.no_grad():
        want = hf(pixel_values=torch.tensor(x.transpose(0, 3, 1, 2))).logits.numpy()
    model = km.ImageClassifier.from_preset(folder)
    got = keras.ops.convert_to_numpy(model({"pixel_values": x}, training=True))
    assert_close(got, want, what="resnet logits in training mode")
    means = [v for v in model.weights if "moving_mean" in v.path]
    before = [keras.ops.convert_to_numpy(v).copy() for v in means]
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    losses = [float(model.train_on_batch({"pixel_values": x}, np.array([0, 2]))) for _ in range(4)]
    assert np.isfinite(losses).all() and losses[-1] < losses[0], losses
    assert all(not np.allclose(keras.ops.convert_to_numpy(v), b) for v, b in zip(means, before))
