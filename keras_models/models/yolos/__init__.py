"""YOLOS (model_type ``yolos``): a ViT (:class:`~keras_models.models.vit.backbone.ViTBackbone`'s
patch embedding, pre-norm blocks and final LayerNorm) whose token sequence is ``[CLS], patches,
num_detection_tokens detection tokens``.

* Position embeddings cover the three parts for the config's ``image_size`` grid; the patch part
  is resized bicubically (``align_corners=False``, no anti-aliasing) to the input's grid.
* ``use_mid_position_embeddings``: one more such table per block but the last
  (``encoder.mid_position_embeddings``), resized alike and added after each block.
* Output: (batch, 1 + patches + detection tokens, hidden). :class:`YolosObjectDetector` reads the
  detection tokens with two 3-layer MLPs (classes + "no object", boxes), as
  :class:`~keras_models.tasks.object_detector.ObjectDetector` describes.
"""

from dataclasses import dataclass

import keras
from keras import ops

from keras_models.layers.vision_embeddings import resize_grid
from keras_models.models.registry import register_backbone, register_task
from keras_models.models.vit.backbone import ViTBackbone, ViTSpec, _pair, one_or_pair, pixel_values_of
from keras_models.presets.weight_map import Rule
from keras_models.spec import const, dim, hf
from keras_models.tasks.object_detector import ObjectDetector

_ser = keras.saving.register_keras_serializable(package="keras_models")


@dataclass(frozen=True, kw_only=True)
class YolosSpec(ViTSpec):
    ignored = ("auxiliary_loss", "class_cost", "bbox_cost", "giou_cost", "bbox_loss_coefficient",
               "giou_loss_coefficient", "eos_coefficient")

    image_size: tuple = hf("image_size", (512, 864), read=_pair, write=list)
    patch_size: tuple = hf("patch_size", (16, 16), read=_pair, write=one_or_pair)
    num_detection_tokens: int = dim("num_detection_tokens", 100)
    use_mid_position_embeddings: bool = hf("use_mid_position_embeddings", True)
    model_type: str = const("yolos")


@_ser
@register_backbone("yolos")
class YolosBackbone(ViTBackbone):
    spec_cls = YolosSpec
    base_model_prefix = "vit"
    hf_architecture = "YolosModel"
    verified_backends = ("jax", "torch", "tensorflow")  # tests/vision/test_detection.py

    def __init__(self, *args, num_detection_tokens=100, use_mid_position_embeddings=True, **kwargs):
        kwargs["model_type"] = "yolos"
        super().__init__(*args, **kwargs)
        self.num_detection_tokens = num_detection_tokens
        self.use_mid_position_embeddings = use_mid_position_embeddings

    def build(self, input_shape=None):
        init = keras.initializers.TruncatedNormal(stddev=self.initializer_range)
        d = self.hidden_size
        seq = 1 + self.grid[0] * self.grid[1] + self.num_detection_tokens
        self.dist_token = self.register_tokens = self.mask_embedding = None
        self.cls_token = self.add_weight(name="cls_token", shape=(1, 1, d), initializer=init)
        self.detection_tokens = self.add_weight(name="detection_tokens", shape=(1, self.num_detection_tokens, d),
                                                initializer=init)
        self.position_embedding = self.add_weight(name="position_embedding", shape=(1, seq, d), initializer=init)
        self.mid_position_embeddings = (
            self.add_weight(name="mid_position_embeddings", shape=(self.num_layers - 1, 1, seq, d), initializer=init)
            if self.use_mid_position_embeddings else None)
        self.patch_embedding.build((None, None, None, self.num_channels))
        for b in self.blocks:
            b.build((None, None, d))
        self.final_norm.build((None, None, d))
        self.built = True

    @property
    def num_prefix_tokens(self):
        return 1

    def yolos_positions(self, table, gh, gw):
        """(n, 1 + grid + det, d) tables -> (n, 1 + gh*gw + det, d), the patch grid resized."""
        n_det, d = self.num_detection_tokens, self.hidden_size
        h, w = self.grid
        grid = ops.reshape(table[:, 1:-n_det], (-1, h, w, d))
        grid = ops.reshape(resize_grid(grid, gh, gw), (-1, gh * gw, d))
        return ops.concatenate([table[:, :1], grid, table[:, -n_det:]], axis=1)

    def embed(self, pixel_values, training=False):
        x = self.patch_embedding(pixel_values)
        b, gh, gw = ops.shape(x)[0], x.shape[1], x.shape[2]
        x = ops.reshape(x, (b, gh * gw, self.hidden_size))
        ones = ops.ones_like(x[:, :1, :1])
        cls = ones * ops.cast(self.cls_token, x.dtype)
        det = ones * ops.cast(self.detection_tokens, x.dtype)
        x = ops.concatenate([cls, x, det], axis=1)
        x = x + ops.cast(self.yolos_positions(self.position_embedding, gh, gw), x.dtype)
        return self.dropout(x, training=training), (gh, gw)

    def call(self, inputs, training=False):
        x, (gh, gw) = self.embed(pixel_values_of(inputs), training=training)
        mid = None
        if self.mid_position_embeddings is not None:
            table = self.mid_position_embeddings
            mid = self.yolos_positions(ops.reshape(table, (table.shape[0],) + tuple(table.shape[2:])), gh, gw)
            mid = ops.cast(mid, x.dtype)
        for i, block in enumerate(self.blocks):
            x = block(x, training=training)
            if mid is not None and i < self.num_layers - 1:
                x = x + mid[i][None]
        return self.final_norm(x)

    def feature_maps(self, inputs, out_indices=None):
        raise NotImplementedError("YolosBackbone has no feature maps (its tokens end with detection tokens)")

    def embedding_rules(self):
        r = super().embedding_rules() + [Rule("embeddings.detection_tokens", self.detection_tokens)]
        if self.mid_position_embeddings is not None:
            r.append(Rule("encoder.mid_position_embeddings", self.mid_position_embeddings,
                          aliases=("encoder.interpolation.mid_position_embeddings",)))
        return r

    def get_config(self):
        c = super().get_config()
        c.update(num_detection_tokens=self.num_detection_tokens,
                 use_mid_position_embeddings=self.use_mid_position_embeddings)
        c.pop("model_type", None)
        return c


@_ser
@register_task(YolosBackbone, "ObjectDetector", ("YolosForObjectDetection",))
class YolosObjectDetector(ObjectDetector):
    """Class and box MLPs (3 layers each) on the detection tokens."""

    class_head_layers = 3
    # Transformers' YolosForObjectDetection(labels=...) raises a TypeError with auxiliary_loss: its heads
    # get outputs.hidden_states, None (or, with output_hidden_states, a tuple of every layer's tokens)
    auxiliary_loss_refused = ("YOLOS has no decoder, and Transformers' YolosForObjectDetection fails on it too: "
                              "its heads get the encoder's hidden_states tuple")

    def slot_states(self, outputs):
        return outputs["last_hidden_state"][:, -self.backbone.num_detection_tokens:]


__all__ = ["YolosSpec", "YolosBackbone", "YolosObjectDetector"]
