"""DonutSwin (Donut's and Nougat's image encoder): Swin without the final LayerNorm, on
rectangular images (``image_size`` [height, width]; windows and patch merging pad as Swin's do).

Its absolute position embeddings (``use_absolute_embeddings``) carry an extra class row that no
Donut checkpoint uses; they are refused with a ConfigError rather than guessed.
"""

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.models.registry import register_backbone
from keras_models.models.swin.backbone import SwinBackbone, SwinSpec
from keras_models.models.vit.backbone import _pair, one_or_pair
from keras_models.spec import const, hf


@dataclass(frozen=True, kw_only=True)
class DonutSwinSpec(SwinSpec):
    unsupported = {"use_absolute_embeddings": (False, None)}
    image_size: tuple = hf("image_size", (224, 224), read=_pair, write=one_or_pair)
    absolute_positions: bool = const(False, doc="no absolute position embeddings (refused when set)")


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("donut-swin")
class DonutSwinBackbone(SwinBackbone):
    """(batch, tokens, C) of the last stage, without a final norm (DonutSwinModel's
    last_hidden_state)."""

    spec_cls = DonutSwinSpec
    verified_backends = ("jax", "torch", "tensorflow")
    base_model_prefix = "donut"
    hf_architecture = "DonutSwinModel"
    hf_known_unused = ()

    def __init__(self, *args, image_size=(224, 224), **kwargs):
        super().__init__(*args, image_size=tuple(_pair(image_size)), **kwargs)
        self.final_norm.trainable = False  # Donut has none (the layer is unused)

    def build(self, input_shape=None):
        self.position_embedding = None
        self.final_norm.build((None, None, self.num_features))
        self.built = True

    def dummy_inputs(self):
        h, w = self.image_size
        return {"pixel_values": np.zeros((1, h, w, self.num_channels), "float32")}

    def call(self, inputs, training=False):
        x = self.stage_outputs(inputs, training=training)[-1]
        return ops.reshape(x, (-1, x.shape[1] * x.shape[2], self.num_features))

    def weight_rules(self):
        return [r for r in super().weight_rules() if not r.hf.startswith("layernorm.")]

    def get_config(self):
        config = super().get_config()
        config["image_size"] = list(self.image_size)
        return config


__all__ = ["DonutSwinSpec", "DonutSwinBackbone"]
