"""ViT-shaped families on :class:`ViTBackbone`: DeiT, DINOv2, DINOv2 with registers.

Each sets its checkpoint prefix / names and translates its config.json; the architecture
differences are ViTBackbone fields.
"""

import keras

from keras_models.models.registry import register_backbone
from keras_models.models.vit.backbone import ViTBackbone
from keras_models.presets.config import require

_ser = keras.saving.register_keras_serializable(package="keras_models")


@_ser
@register_backbone("deit")
class DeiTBackbone(ViTBackbone):
    """ViT with a distillation token after [CLS] (``distillation_token=True``)."""
    verified_backends = ("jax", "torch", "tensorflow")  # parity tests pass on all three

    base_model_prefix = "deit"
    hf_architecture = "DeiTModel"

    @classmethod
    def config_from_hf(cls, hf):
        c = super().config_from_hf(hf)
        c["distillation_token"] = True
        return c


@_ser
@register_backbone("dinov2")
class Dinov2Backbone(ViTBackbone):
    """Layer scale, MLP from ``mlp_ratio`` (plain or SwiGLU), always-interpolated positions."""
    verified_backends = ("jax", "torch", "tensorflow")  # parity tests pass on all three

    base_model_prefix = "dinov2"
    hf_architecture = "Dinov2Model"
    hf_names = {"query": "attention.attention.query", "key": "attention.attention.key",
                "value": "attention.attention.value", "output": "attention.output.dense",
                "norm1": "norm1", "norm2": "norm2", "fc1": "mlp.fc1", "fc2": "mlp.fc2",
                "scale1": "layer_scale1.lambda1", "scale2": "layer_scale2.lambda1"}
    swiglu_names = {"fc1": "mlp.weights_in", "fc2": "mlp.weights_out"}  # fc1 = [gate; up]

    def block_names(self):
        return {**self.hf_names, **(self.swiglu_names if self.mlp == "swiglu" else {})}

    @classmethod
    def config_from_hf(cls, hf):
        hidden = require(hf, "hidden_size")
        swiglu = bool(hf.get("use_swiglu_ffn", False))
        inner = int(hidden * hf.get("mlp_ratio", 4))
        if swiglu:
            inner = (int(inner * 2 / 3) + 7) // 8 * 8
        c = super().config_from_hf({**hf, "intermediate_size": inner})
        c.update(layer_norm_eps=hf.get("layer_norm_eps", 1e-6), mlp="swiglu" if swiglu else "plain",
                 layer_scale=hf.get("layerscale_value", 1.0), mask_token=hf.get("use_mask_token", True))
        return c

    def config_to_hf(self):
        c = super().config_to_hf()
        c.pop("intermediate_size")
        ratio = self.intermediate_size / self.hidden_size
        c.update(mlp_ratio=int(ratio) if ratio == int(ratio) else ratio, layerscale_value=self.layer_scale,
                 use_swiglu_ffn=self.mlp == "swiglu", use_mask_token=self.mask_token)
        if self.mlp == "swiglu":
            c["mlp_ratio"] = 4  # the SwiGLU width is derived; DINOv2 giant uses 4
        return c


@_ser
@register_backbone("dinov2_with_registers")
class Dinov2WithRegistersBackbone(Dinov2Backbone):
    """DINOv2 plus register tokens after [CLS]; positions resized with the anti-aliased kernel."""

    base_model_prefix = "dinov2_with_registers"
    hf_architecture = "Dinov2WithRegistersModel"

    @classmethod
    def config_from_hf(cls, hf):
        c = super().config_from_hf(hf)
        c.update(num_register_tokens=hf.get("num_register_tokens", 4), interpolate_antialias=True)
        return c

    def config_to_hf(self):
        c = super().config_to_hf()
        c["num_register_tokens"] = self.num_register_tokens
        return c
