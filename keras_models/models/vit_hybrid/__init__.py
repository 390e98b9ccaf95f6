"""ViT Hybrid (removed from Transformers 5): a BiT convolutional stem
(:class:`~keras_models.models.bit.backbone.BitBackbone`, its ``out_features`` stage) whose map is
cut into ``patch_size`` patches (usually 1: every position a token) and fed to a plain ViT
(:class:`~keras_models.models.vit.backbone.ViTBackbone`: [CLS], learned positions for the
``backbone_featmap_shape`` grid, pre-norm blocks, final LayerNorm). Channels_last input.
Output: (batch, 1 + tokens, hidden), like ViT. :class:`ViTHybridImageClassifier`: linear head on
[CLS]. The BiT weights live under ``embeddings.patch_embeddings.backbone.bit.``.
"""

import dataclasses
from dataclasses import dataclass

import keras

from keras_models.errors import ConfigError
from keras_models.models.bit.backbone import BitBackbone, BitSpec
from keras_models.models.registry import register_backbone, register_task
from keras_models.models.vit.backbone import ViTBackbone, ViTSpec
from keras_models.spec import const, hf, nested
from keras_models.tasks.image_classifier import ImageClassifier

_ser = keras.saving.register_keras_serializable(package="keras_models")
BIT_PREFIX = "embeddings.patch_embeddings.backbone.bit."


@dataclass(frozen=True, kw_only=True)
class ViTHybridSpec(ViTSpec):
    ignored = ("backbone", "use_pretrained_backbone", "use_timm_backbone", "backbone_kwargs")

    patch_size: tuple = hf("patch_size", (1, 1), read=lambda v: (v, v) if isinstance(v, int) else tuple(v),
                           write=lambda v: v[0] if v[0] == v[1] else list(v))
    layer_norm_eps: float = hf("layer_norm_eps", 1e-12)
    backbone_config: BitSpec = nested("backbone_config", BitSpec)
    backbone_featmap_shape: tuple = hf("backbone_featmap_shape", (1, 1024, 24, 24))
    bit_out_stage: int = const(-1, doc="index of the BiT stage that feeds the ViT (backbone_config.out_features)")
    model_type: str = const("vit-hybrid")

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        bb = config.get("backbone_config") or {}
        if bb.get("model_type", "bit") != "bit":
            raise ConfigError(f"{source}: backbone_config.model_type={bb.get('model_type')!r}: ViT Hybrid "
                              "supports a BiT backbone only")
        outs = bb.get("out_features") or []
        n = len(bb.get("depths") or BitSpec.__dataclass_fields__["depths"].default)
        if len(outs) > 1:
            raise ConfigError(f"{source}: backbone_config.out_features={outs}: one stage feeds the ViT")
        if outs:
            name = outs[0]
            if not (name.startswith("stage") and name[5:].isdigit() and 1 <= int(name[5:]) <= n):
                raise ConfigError(f"{source}: backbone_config.out_features={outs} names no stage of 1..{n}")
            values["bit_out_stage"] = int(name[5:]) - 1
        return values

    def adjust_to_hf(self, out):
        bb = dict(out["backbone_config"], model_type="bit")
        n = len(self.backbone_config.depths)
        stage = self.bit_out_stage % n
        bb.update(out_features=[f"stage{stage + 1}"], out_indices=[stage + 1],
                  stage_names=["stem"] + [f"stage{i + 1}" for i in range(n)])
        out["backbone_config"] = bb
        return out


@_ser
@register_backbone("vit-hybrid")
class ViTHybridBackbone(ViTBackbone):
    spec_cls = ViTHybridSpec
    base_model_prefix = "vit"
    hf_architecture = "ViTHybridModel"
    hf_ignore = ("*num_batches_tracked",)
    verified_backends = ("jax", "torch", "tensorflow")  # tests/vision/test_vision_removed.py

    def __init__(self, *args, backbone_config=None, backbone_featmap_shape=(1, 1024, 24, 24), bit_out_stage=-1,
                 **kwargs):
        kwargs["model_type"] = "vit-hybrid"
        super().__init__(*args, **kwargs)
        if isinstance(backbone_config, dict):
            backbone_config = BitSpec.from_config(backbone_config)
        self.bit_spec = backbone_config if backbone_config is not None else BitSpec()
        self.backbone_featmap_shape, self.bit_out_stage = tuple(backbone_featmap_shape), bit_out_stage
        common = dict(dtype=self.dtype_policy)
        self.bit = BitBackbone(**self.bit_spec.kwargs(), name="bit", **common)
        fh, fw = self.backbone_featmap_shape[-2:]
        self.grid = (fh // self.patch_size[0], fw // self.patch_size[1])
        # ViT's patch embedding reads the BiT map's channels (not the image's); set before it builds
        # (a replacement layer would leave the original tracked and unbuilt)
        self.patch_embedding.num_channels = self.backbone_featmap_shape[1]

    def embed(self, pixel_values, training=False):
        x = self.bit.stem_output(pixel_values, training=training)
        last = self.bit_out_stage % len(self.bit.stages)
        for layers in self.bit.stages[:last + 1]:  # the stages after the one that feeds the ViT are unused
            for layer in layers:
                x = layer(x, training=training)
        return super().embed(x, training=training)

    def build(self, input_shape=None):
        super().build(input_shape)
        # every BiT stage, also those after the one feeding the ViT (unused, but in checkpoints)
        self.bit.build_from_dummy()

    def embedding_rules(self):
        bit = [dataclasses.replace(r, hf=BIT_PREFIX + r.hf) for r in self.bit.weight_rules()]
        return super().embedding_rules() + bit

    def get_config(self):
        c = super().get_config()
        c.update(backbone_config=self.bit_spec.to_config(), backbone_featmap_shape=list(self.backbone_featmap_shape),
                 bit_out_stage=self.bit_out_stage)
        c.pop("model_type", None)
        return c


@_ser
@register_task(ViTHybridBackbone, "ImageClassifier", ("ViTHybridForImageClassification",))
class ViTHybridImageClassifier(ImageClassifier):
    pooling = "cls"


__all__ = ["ViTHybridBackbone", "ViTHybridImageClassifier", "ViTHybridSpec"]
