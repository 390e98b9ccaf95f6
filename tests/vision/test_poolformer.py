"""PoolFormer backbone and classifier (head GroupNorm) parity."""

import pytest

import keras_models as km
from tests.parity import assert_close
from tests.vision.vision_parity import assert_task_close, hf_hidden_to_ours, pixels, run, vision_reference


def _poolformer(cls):
    import transformers

    cfg = transformers.PoolFormerConfig(hidden_sizes=[8, 16], depths=[1, 2], patch_sizes=[7, 3], strides=[4, 2],
                                        padding=[2, 1], num_encoder_blocks=2, num_labels=3,
                                        layer_scale_init_value=0.3)
    return getattr(transformers, cls)(cfg)


@pytest.mark.parametrize("head,size", [("PoolFormerModel", (40, 36)), ("PoolFormerForImageClassification", (32, 32))])
def test_parity(head, size):
    x = pixels(2, *size)
    folder, expected = vision_reference(f"poolformer-{head}", lambda: _poolformer(head), x)
    if head == "PoolFormerModel":
        out = run(km.Backbone.from_preset(folder), x)
        assert_close(out, hf_hidden_to_ours(expected["last_hidden_state"]), what=f"poolformer {size}")
    else:
        model = km.ImageClassifier.from_preset(folder)
        assert model.head_from_checkpoint
        assert_task_close(model, x, expected, what=f"poolformer {size}")
