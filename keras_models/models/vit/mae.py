"""ViTMAE encoder as a plain :class:`ViTBackbone` (model_type ``vit_mae``).

Transformers' ViTMAEModel always runs random masking: it keeps ``(1 - mask_ratio)`` of the patch
tokens, in an order drawn from random noise (argsort), even with ``mask_ratio=0``. This backbone
runs the deterministic, unmasked path: every patch token in raster order, i.e. Transformers with
``mask_ratio=0`` and ``noise`` increasing along the sequence. Its [CLS] gets ``pos[0]`` and the
patches ``pos[1:]``, the same sum as ViT's. ``mask_ratio`` is kept only to write config.json
back; the pre-training decoder (``decoder.*``) is not built.
"""

from dataclasses import dataclass

import keras

from keras_models.models.registry import register_backbone
from keras_models.models.vit.backbone import ViTBackbone, ViTSpec
from keras_models.spec import const, hf

_ser = keras.saving.register_keras_serializable(package="keras_models")


@dataclass(frozen=True, kw_only=True)
class ViTMAESpec(ViTSpec):
    mask_ratio: float = hf("mask_ratio", 0.75, doc="pre-training only; kept for config.json")
    model_type: str = const("vit_mae")


@_ser
@register_backbone("vit_mae")
class ViTMAEBackbone(ViTBackbone):
    spec_cls = ViTMAESpec
    base_model_prefix = "vit"
    hf_architecture = "ViTMAEModel"
    hf_known_unused = ("decoder.*",)
    verified_backends = ("jax", "torch", "tensorflow")

    def __init__(self, *args, mask_ratio=0.75, **kwargs):
        kwargs.setdefault("model_type", "vit_mae")
        super().__init__(*args, **kwargs)
        self.mask_ratio = mask_ratio

    def get_config(self):
        c = super().get_config()
        c["mask_ratio"] = self.mask_ratio
        return c


__all__ = ["ViTMAESpec", "ViTMAEBackbone"]
