"""More ConvNet families (RegNet, BiT, MobileNetV1/V2, EfficientNet): backbone output and every
multi-scale feature map against Transformers' hidden states at odd resolutions, and the classifier
end to end from raw images through the checkpoint's own preprocessor_config.json, under the current
Keras backend. Tiny configs with non-default switches (activations, multipliers, padding modes)."""

import numpy as np
import pytest

import keras_models as km
from tests.parity import assert_close, hf_reference
from tests.vision.vision_parity import assert_task_close, hf_hidden_to_ours, pixels, run


def _hf(cls, config_cls, **kw):
    import transformers

    return getattr(transformers, cls)(getattr(transformers, config_cls)(**kw))


def _processor(name, **kw):
    import transformers

    return getattr(transformers, name)(**kw)


# family -> (HF prefix, config class, config kwargs, our feature maps as HF tensors: an index into
#            hidden_states, "last" (last_hidden_state) or the name of a submodule whose output it is,
#            image processor class, its kwargs)
FAMILIES = {
    "regnet_y": ("RegNet", "RegNetConfig",
                 dict(embedding_size=8, hidden_sizes=[8, 16, 24], depths=[1, 2, 1], groups_width=4,
                      layer_type="y", hidden_act="gelu", num_labels=3),
                 [1, 2, 3], "ConvNextImageProcessorPil", dict(size={"shortest_edge": 32}, crop_pct=0.8)),
    "regnet_x": ("RegNet", "RegNetConfig",
                 dict(embedding_size=12, hidden_sizes=[16, 24], depths=[2, 1], groups_width=8, layer_type="x",
                      hidden_act="silu", downsample_in_first_stage=False, num_labels=4),
                 [1, 2], "ConvNextImageProcessorPil", dict(size={"shortest_edge": 40})),
    "bit": ("Bit", "BitConfig",
            dict(embedding_size=8, hidden_sizes=[16, 32], depths=[1, 2], num_groups=2, hidden_act="gelu",
                 num_labels=3),
            [1, 2], "BitImageProcessorPil", dict(size={"shortest_edge": 36}, crop_size={"height": 32, "width": 32})),
    # ViT-hybrid style: no pre-activation, TF SAME padding, dynamic stem pool padding, dilated last stage
    "bit_hybrid": ("Bit", "BitConfig",
                   dict(embedding_size=8, hidden_sizes=[16, 24, 32, 40], depths=[1, 1, 1, 2], num_groups=4,
                        layer_type="bottleneck", global_padding="SAME", embedding_dynamic_padding=True,
                        output_stride=16, hidden_act="silu", num_labels=2),
                   [1, 2, 3, 4], "BitImageProcessorPil", dict(size={"shortest_edge": 40}, do_center_crop=False)),
    "mobilenet_v1": ("MobileNetV1", "MobileNetV1Config",
                     dict(depth_multiplier=0.125, min_depth=4, layer_norm_eps=1e-2, num_labels=3),
                     [1, 5, 9, 21, 25], "MobileNetV1ImageProcessorPil",
                     dict(size={"shortest_edge": 36}, crop_size={"height": 33, "width": 35})),
    # PyTorch padding, another activation, odd widths (int(64 * 0.1) = 6 ...)
    "mobilenet_v1_torch_pad": ("MobileNetV1", "MobileNetV1Config",
                               dict(depth_multiplier=0.1, min_depth=6, tf_padding=False, hidden_act="silu",
                                    num_labels=2),
                               [1, 5, 9, 21, 25], "MobileNetV1ImageProcessorPil",
                               dict(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})),
    "mobilenet_v2": ("MobileNetV2", "MobileNetV2Config",
                     dict(depth_multiplier=0.25, depth_divisible_by=4, min_depth=4, expand_ratio=3.0,
                          layer_norm_eps=1e-2, num_labels=3),
                     ["conv_stem", 1, 4, 11, "last"], "MobileNetV2ImageProcessorPil",
                     dict(size={"shortest_edge": 36}, crop_size={"height": 35, "width": 33})),
    # dilated after stride 8, separate stem expansion, PyTorch padding, no fine-grained output
    "mobilenet_v2_dilated": ("MobileNetV2", "MobileNetV2Config",
                             dict(depth_multiplier=0.35, min_depth=8, expand_ratio=2.5, output_stride=8,
                                  first_layer_is_expansion=False, finegrained_output=False, tf_padding=False,
                                  hidden_act="tanh", num_labels=2),
                             ["conv_stem", 1, "last"], "MobileNetV2ImageProcessorPil",
                             dict(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})),
    # 4 blocks; block 1 pads its strided depthwise conv symmetrically; max pooling
    "efficientnet": ("EfficientNet", "EfficientNetConfig",
                     dict(width_coefficient=0.25, depth_coefficient=1.0, kernel_sizes=[3, 5, 3],
                          in_channels=[32, 16, 24], out_channels=[16, 24, 40], strides=[1, 2, 2],
                          num_block_repeats=[1, 2, 1], expand_ratios=[1, 6, 4], depthwise_padding=[1],
                          squeeze_expansion_ratio=0.5, hidden_dim=320, pooling_type="max", batch_norm_eps=1e-2,
                          num_labels=3),
                     [1, 3, "last"], "EfficientNetImageProcessorPil",
                     dict(size={"height": 35, "width": 33}, rescale_offset=True)),
    # depth multiplier (ceil(1.6 * repeats)), width 0.3 (rounded up to 16), another activation
    "efficientnet_deep": ("EfficientNet", "EfficientNetConfig",
                          dict(width_coefficient=0.3, depth_coefficient=1.6, kernel_sizes=[3, 3], in_channels=[32, 16],
                               out_channels=[16, 24], strides=[2, 2], num_block_repeats=[1, 2], expand_ratios=[1, 3],
                               hidden_dim=384, hidden_act="gelu", num_labels=2),
                          [0, 2, "last"], "EfficientNetImageProcessorPil", dict(size={"height": 32, "width": 32})),
}


def _model(family, head):
    prefix, config_cls, kw, _, _, _ = FAMILIES[family]
    return _hf(prefix + head, config_cls, **kw)


def _backbone_reference(family, x):
    """(folder, expected) of the family's Model on ``x``, with its hidden states (NHWC) saved too."""

    def save_hidden(folder, model):
        import torch

        captured = {}
        for name in FAMILIES[family][3]:
            if isinstance(name, str) and name != "last":
                model.get_submodule(name).register_forward_hook(
                    lambda m, i, o, name=name: captured.__setitem__(name, o))
        with torch.no_grad():
            out = model(pixel_values=torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))),
                        output_hidden_states=True)
        maps = [out.last_hidden_state if j == "last" else captured[j] if isinstance(j, str) else out.hidden_states[j]
                for j in FAMILIES[family][3]]
        np.savez(folder / "feature_maps.npz", *[hf_hidden_to_ours(h.numpy()) for h in maps])

    folder, expected = hf_reference(f"more-{family}-Model", lambda: _model(family, "Model"),
                                    {"pixel_values": np.ascontiguousarray(x.transpose(0, 3, 1, 2))},
                                    extra_save=save_hidden)
    maps = np.load(folder / "feature_maps.npz")
    expected["feature_maps"] = [maps[f"arr_{i}"] for i in range(len(maps.files))]
    return folder, expected


def _feature_maps(backbone, x):
    """``backbone.feature_maps`` as one compiled program (a functional model over it)."""
    import keras

    inp = keras.Input(x.shape[1:])
    return keras.Model(inp, backbone.feature_maps({"pixel_values": inp})).predict_on_batch(x)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_backbone_and_feature_maps(family):
    x = pixels(2, 45, 38)
    folder, expected = _backbone_reference(family, x)
    model = km.Backbone.from_preset(folder)
    assert_close(run(model, x), hf_hidden_to_ours(expected["last_hidden_state"]), what=f"{family} backbone")
    maps = _feature_maps(model, x)
    assert len(maps) == len(expected["feature_maps"])
    for i, (ours, want) in enumerate(zip(maps, expected["feature_maps"])):
        assert_close(ours, want, what=f"{family} feature map {i}")


def _images(seed=0):
    """Two random RGB PIL images (raw inputs for ``predict``)."""
    from PIL import Image

    rng = np.random.RandomState(seed)
    return [Image.fromarray(rng.randint(0, 256, size=(43, 51, 3)).astype("uint8")) for _ in range(2)]


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_classifier_from_raw_images(family):
    _, _, _, _, proc_cls, proc_kw = FAMILIES[family]
    images = _images()
    pixel_values = _processor(proc_cls, **proc_kw)(images=images, return_tensors="np")["pixel_values"]
    folder, expected = hf_reference(f"more-{family}-ForImageClassification",
                                    lambda: _model(family, "ForImageClassification"), {"pixel_values": pixel_values},
                                    extra_save=lambda f, m: _processor(proc_cls, **proc_kw).save_pretrained(f))
    model = km.ImageClassifier.from_preset(folder)
    assert model.head_from_checkpoint and model.preprocessor is not None
    assert_close(model.predict(images, verbose=0), expected["logits"], what=f"{family} raw images")
    assert_task_close(model, pixel_values.transpose(0, 2, 3, 1), expected, what=f"{family} pixel_values")


def _same_weights(a, b, what):
    assert len(a.weights) == len(b.weights), what
    for u, v in zip(a.weights, b.weights):
        assert u.shape == v.shape and np.array_equal(np.asarray(u), np.asarray(v)), f"{what}: {u.path}"


@pytest.mark.parametrize("family", ["bit", "efficientnet"])
def test_keras_file_and_preset_round_trip(family, tmp_path):
    """.keras and save_to_preset reload the same config and weights (outputs: the parity tests);
    the exported checkpoint + config.json reload in Transformers with the reference outputs."""
    import keras
    import torch
    import transformers

    x = pixels(2, 45, 38)
    folder, expected = _backbone_reference(family, x)
    model = km.Backbone.from_preset(folder)
    model.save(tmp_path / "model.keras")
    again = keras.saving.load_model(tmp_path / "model.keras")
    assert again.get_config() == model.get_config()
    _same_weights(model, again, f"{family} .keras")
    model.save_to_preset(tmp_path / "preset")
    _same_weights(model, km.Backbone.from_preset(tmp_path / "preset"), f"{family} preset")
    hf = transformers.AutoModel.from_pretrained(tmp_path / "preset").eval()
    # every exported tensor (and BatchNorm's running statistics) bit-equal to the reference
    # checkpoint's; the outputs then differ only by the convolution kernels oneDNN picks in this
    # process (1.8e-7 seen, not 0). num_batches_tracked (a training counter, not exported) aside.
    source = transformers.AutoModel.from_pretrained(folder).state_dict()
    exported = hf.state_dict()
    assert sorted(exported) == sorted(source)
    for name, tensor in source.items():
        if not name.endswith("num_batches_tracked"):
            assert torch.equal(exported[name], tensor), f"{family} transformers reload: {name} differs"
    with torch.no_grad():
        got = hf(pixel_values=torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))).last_hidden_state
    assert_close(got.numpy(), expected["last_hidden_state"], atol=1e-6, what=f"{family} transformers reload")
