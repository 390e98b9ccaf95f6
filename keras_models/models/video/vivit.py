"""ViViT (model_type ``vivit``): Transformers' ViViT is the paper's model 1, spatio-temporal
attention over every tubelet.

Tubelet embedding (Conv3D, kernel = stride = ``tubelet_size`` (t, h, w)) -> [CLS] + tubelets ->
learned position embeddings -> pre-norm ViT blocks (``hidden_act`` "gelu_fast" by default) ->
final norm. The classifier reads [CLS]. ``VivitModel``'s pooler (dense + tanh on [CLS]) is not
part of the backbone output; its tensors are reported as unused.
"""

from dataclasses import dataclass

import keras
from keras import ops

from keras_models.errors import ConfigError
from keras_models.layers.vision_block import VisionBlock
from keras_models.layers.vision_embeddings import dense_rules, norm_rules
from keras_models.models.registry import register_backbone
from keras_models.models.video.common import TubeletEmbedding, VideoBackbone, VideoSpec, conv3d_rules
from keras_models.presets.weight_map import Rule
from keras_models.spec import hf


def _triple(v):
    v = tuple(int(i) for i in v) if isinstance(v, (list, tuple)) else (int(v),) * 3
    if len(v) != 3:
        raise ValueError("expected [frames, height, width]")
    return v


@dataclass(frozen=True, kw_only=True)
class VivitSpec(VideoSpec):
    num_frames: int = hf("num_frames", 32, dim=True)
    tubelet_size: tuple = hf("tubelet_size", (2, 16, 16), read=_triple, doc="(frames, height, width)")
    hidden_act: str = hf("hidden_act", "gelu_fast")
    layer_norm_eps: float = hf("layer_norm_eps", 1e-6)
    qkv_bias: bool = hf("qkv_bias", True)
    pooler_output_size: int | None = hf("pooler_output_size", None, doc="VivitModel's pooler (not built)")
    pooler_act: str = hf("pooler_act", "tanh", doc="VivitModel's pooler (not built)")

    def validate(self, source="config.json"):
        t, h, w = self.tubelet_size
        if self.num_frames % t or self.image_size[0] % h or self.image_size[1] % w:
            raise ConfigError(f"{source}: tubelet_size {list(self.tubelet_size)} does not divide num_frames "
                              f"{self.num_frames} / image_size {list(self.image_size)}")


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("vivit")
class VivitBackbone(VideoBackbone):
    spec_cls = VivitSpec
    base_model_prefix = "vivit"
    hf_architecture = "VivitModel"
    hf_known_unused = ("pooler.dense.*",)
    verified_backends = ("jax", "torch", "tensorflow")  # tests/video/test_video_models.py

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s, init = self.spec, self.kernel_init()
        common = dict(dtype=self.dtype_policy)
        t, h, w = s.tubelet_size
        self.num_patches = (s.num_frames // t) * (self.image_size[0] // h) * (self.image_size[1] // w)
        self.patch_embedding = TubeletEmbedding(s.hidden_size, s.tubelet_size, s.num_channels, kernel_initializer=init,
                                                name="patch_embedding", **common)
        self.blocks = [
            VisionBlock(s.hidden_size, s.num_heads, s.intermediate_size, hidden_act=s.hidden_act,
                        layer_norm_eps=s.layer_norm_eps, qkv_bias=s.qkv_bias, dropout=s.dropout,
                        attention_dropout=s.attention_dropout, kernel_initializer=init, name=f"block_{i}", **common)
            for i in range(s.num_layers)
        ]
        self.final_norm = keras.layers.LayerNormalization(epsilon=s.layer_norm_eps, name="final_norm", **common)
        self.embedding_dropout = keras.layers.Dropout(s.dropout, **common)

    def build(self, input_shape):
        d, init = self.hidden_size, self.kernel_init()
        self.cls_token = self.add_weight(name="cls_token", shape=(1, 1, d), initializer="zeros")
        self.position_embedding = self.add_weight(name="position_embedding", shape=(1, self.num_patches + 1, d),
                                                  initializer=init)
        self.patch_embedding.build(None)
        for b in self.blocks:
            b.build((None, None, d))
        self.final_norm.build((None, None, d))
        self.built = True

    def call(self, inputs, training=False):
        x = self.patch_embedding(self.video_input(inputs))
        cls = ops.broadcast_to(ops.cast(self.cls_token, x.dtype), (ops.shape(x)[0], 1, self.hidden_size))
        x = ops.concatenate([cls, x], axis=1) + ops.cast(self.position_embedding, x.dtype)
        x = self.embedding_dropout(x, training=training)
        for block in self.blocks:
            x = block(x, training=training)
        return self.final_norm(x)

    def weight_rules(self):
        r = [Rule("embeddings.cls_token", self.cls_token),
             Rule("embeddings.position_embeddings", self.position_embedding)]
        r += conv3d_rules("embeddings.patch_embeddings.projection", self.patch_embedding.projection)
        for i, b in enumerate(self.blocks):
            p = f"encoder.layer.{i}."
            a = b.attention
            for name, dense in (("attention.attention.query", a.query), ("attention.attention.key", a.key),
                                ("attention.attention.value", a.value), ("attention.output.dense", a.output_dense),
                                ("intermediate.dense", b.fc1), ("output.dense", b.fc2)):
                r += dense_rules(p + name, dense)
            r += norm_rules(p + "layernorm_before", b.norm1) + norm_rules(p + "layernorm_after", b.norm2)
        return r + norm_rules("layernorm", self.final_norm)


__all__ = ["VivitSpec", "VivitBackbone"]
