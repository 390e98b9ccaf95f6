"""VideoMAE (model_type ``videomae``): a ViT encoder over tubelets.

Tubelet embedding (Conv3D, kernel = stride = (tubelet_size, patch, patch)) + a fixed sin/cos
position table (not a weight) + pre-norm blocks whose attention has query and value biases but no
key bias (checkpoints name them ``q_bias`` / ``v_bias``; Transformers 5 also reads
``query.bias`` / ``value.bias``, accepted as aliases). ``use_mean_pooling`` (the fine-tuned
classifiers' default): no final norm in the encoder; the classifier averages every token and
applies its own ``fc_norm`` (eps 1e-5). Without it, the encoder ends with ``layernorm`` and the
classifier reads the first token (VideoMAE has no [CLS]). The pre-training decoder is not built.
"""

from dataclasses import dataclass

import keras
from keras import ops

from keras_models.layers.vision_block import VisionBlock
from keras_models.layers.vision_embeddings import dense_rules, norm_rules
from keras_models.models.registry import register_backbone
from keras_models.models.video.common import (
    TubeletEmbedding,
    VideoBackbone,
    VideoSpec,
    conv3d_rules,
    one_or_pair,
    pair,
    sinusoid_table,
)
from keras_models.presets.weight_map import TRANSPOSE, Rule
from keras_models.spec import dim, hf

_ser = keras.saving.register_keras_serializable(package="keras_models")


@dataclass(frozen=True, kw_only=True)
class VideoMAESpec(VideoSpec):
    patch_size: tuple = hf("patch_size", (16, 16), read=pair, write=one_or_pair)
    tubelet_size: int = dim("tubelet_size", 2)
    qv_bias: bool = hf(("qv_bias", "qkv_bias"), True, doc="query and value biases (no key bias)")
    use_mean_pooling: bool = hf("use_mean_pooling", True,
                                doc="True: no final norm; the classifier mean-pools + fc_norm")


@_ser
@register_backbone("videomae")
class VideoMAEBackbone(VideoBackbone):
    spec_cls = VideoMAESpec
    base_model_prefix = "videomae"
    hf_architecture = "VideoMAEModel"
    # the pre-training model's decoder side (VideoMAEForPreTraining) is not built
    hf_known_unused = ("decoder.*", "encoder_to_decoder.*", "mask_token")
    verified_backends = ("jax", "torch", "tensorflow")  # tests/video/test_video_models.py

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s, init = self.spec, self.kernel_init()
        common = dict(dtype=self.dtype_policy)
        self.patch_size = tuple(s.patch_size)
        self.grid = (s.num_frames // s.tubelet_size, self.image_size[0] // self.patch_size[0],
                     self.image_size[1] // self.patch_size[1])
        self.num_patches = self.grid[0] * self.grid[1] * self.grid[2]
        self.patch_embedding = TubeletEmbedding(s.hidden_size, (s.tubelet_size,) + self.patch_size, s.num_channels,
                                                kernel_initializer=init, name="patch_embedding", **common)
        self.blocks = [
            VisionBlock(s.hidden_size, s.num_heads, s.intermediate_size, hidden_act=s.hidden_act,
                        layer_norm_eps=s.layer_norm_eps, qkv_bias=s.qv_bias, key_bias=False,
                        dropout=s.dropout, attention_dropout=s.attention_dropout, kernel_initializer=init,
                        name=f"block_{i}", **common)
            for i in range(s.num_layers)
        ]
        self.final_norm = (None if s.use_mean_pooling else
                           keras.layers.LayerNormalization(epsilon=s.layer_norm_eps, name="final_norm", **common))
        self.position_table = sinusoid_table(self.num_patches, s.hidden_size)

    @property
    def classifier_pooling(self):
        return "mean" if self.use_mean_pooling else "cls"

    def build(self, input_shape):
        d = self.hidden_size
        self.patch_embedding.build(None)
        for b in self.blocks:
            b.build((None, None, d))
        if self.final_norm is not None:
            self.final_norm.build((None, None, d))
        self.built = True

    def call(self, inputs, training=False):
        x = self.patch_embedding(self.video_input(inputs))
        x = x + ops.cast(ops.convert_to_tensor(self.position_table), x.dtype)
        for block in self.blocks:
            x = block(x, training=training)
        return x if self.final_norm is None else self.final_norm(x)

    def weight_rules(self):
        r = conv3d_rules("embeddings.patch_embeddings.projection", self.patch_embedding.projection)
        for i, b in enumerate(self.blocks):
            p = f"encoder.layer.{i}."
            a = b.attention
            r += [Rule(f"{p}attention.attention.{n}.weight", d.kernel, TRANSPOSE)
                  for n, d in (("query", a.query), ("key", a.key), ("value", a.value))]
            if self.qv_bias:
                r += [Rule(p + "attention.attention.q_bias", a.query.bias,
                           aliases=(p + "attention.attention.query.bias",)),
                      Rule(p + "attention.attention.v_bias", a.value.bias,
                           aliases=(p + "attention.attention.value.bias",))]
            r += dense_rules(p + "attention.output.dense", a.output_dense)
            r += dense_rules(p + "intermediate.dense", b.fc1) + dense_rules(p + "output.dense", b.fc2)
            r += norm_rules(p + "layernorm_before", b.norm1) + norm_rules(p + "layernorm_after", b.norm2)
        if self.final_norm is not None:
            r += norm_rules("layernorm", self.final_norm)
        return r


__all__ = ["VideoMAESpec", "VideoMAEBackbone"]
