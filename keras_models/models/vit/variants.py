"""ViT-shaped families on :class:`ViTBackbone`: DeiT, DINOv2, DINOv2 with registers.

Each sets its checkpoint prefix / names and declares its config.json as a :class:`ViTSpec`
subclass; the architecture differences are ViTBackbone fields.
"""

from dataclasses import dataclass

import keras

from keras_models.models.registry import register_backbone
from keras_models.models.vit.backbone import ViTBackbone, ViTSpec, _pair, one_or_pair
from keras_models.spec import const, hf

_ser = keras.saving.register_keras_serializable(package="keras_models")


@dataclass(frozen=True, kw_only=True)
class DeiTSpec(ViTSpec):
    model_type: str = const("deit")
    distillation_token: bool = const(True)


def _swiglu(v):
    return "swiglu" if v else "plain"


@dataclass(frozen=True, kw_only=True)
class Dinov2Spec(ViTSpec):
    """The MLP width comes from ``mlp_ratio`` (and, for SwiGLU, is rounded as Transformers does)."""

    patch_size: tuple = hf("patch_size", (14, 14), read=_pair, write=one_or_pair)
    layer_norm_eps: float = hf("layer_norm_eps", 1e-6)
    intermediate_size: int = const(3072, doc="from mlp_ratio * hidden_size (adjust_from_hf)")
    mlp: str = hf("use_swiglu_ffn", "plain", read=_swiglu, write=lambda m: m == "swiglu")
    layer_scale: float | None = hf("layerscale_value", 1.0)
    mask_token: bool = hf("use_mask_token", True)
    model_type: str = const("dinov2")

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        values = super().adjust_from_hf(config, values, source)
        ratio = config.get("mlp_ratio")
        inner = int(values.get("hidden_size", 768) * (4 if ratio is None else ratio))
        if values.get("mlp") == "swiglu":
            inner = (int(inner * 2 / 3) + 7) // 8 * 8
        values["intermediate_size"] = inner
        return values

    def adjust_to_hf(self, out):
        ratio = self.intermediate_size / self.hidden_size
        # the SwiGLU width is derived from mlp_ratio 4 (DINOv2 giant)
        out["mlp_ratio"] = 4 if self.mlp == "swiglu" else (int(ratio) if ratio == int(ratio) else ratio)
        return out


@dataclass(frozen=True, kw_only=True)
class Dinov2WithRegistersSpec(Dinov2Spec):
    patch_size: tuple = hf("patch_size", (16, 16), read=_pair, write=one_or_pair)
    num_register_tokens: int = hf("num_register_tokens", 4)
    interpolate_antialias: bool = const(True)
    mask_token: bool = const(True)
    model_type: str = const("dinov2_with_registers")


@_ser
@register_backbone("deit")
class DeiTBackbone(ViTBackbone):
    """ViT with a distillation token after [CLS] (``distillation_token=True``)."""
    verified_backends = ("jax", "torch", "tensorflow")  # parity tests pass on all three

    spec_cls = DeiTSpec
    base_model_prefix = "deit"
    hf_architecture = "DeiTModel"


@_ser
@register_backbone("dinov2")
class Dinov2Backbone(ViTBackbone):
    """Layer scale, MLP from ``mlp_ratio`` (plain or SwiGLU), always-interpolated positions."""
    verified_backends = ("jax", "torch", "tensorflow")  # parity tests pass on all three

    spec_cls = Dinov2Spec
    base_model_prefix = "dinov2"
    hf_architecture = "Dinov2Model"
    hf_names = {"query": "attention.attention.query", "key": "attention.attention.key",
                "value": "attention.attention.value", "output": "attention.output.dense",
                "norm1": "norm1", "norm2": "norm2", "fc1": "mlp.fc1", "fc2": "mlp.fc2",
                "scale1": "layer_scale1.lambda1", "scale2": "layer_scale2.lambda1"}
    swiglu_names = {"fc1": "mlp.weights_in", "fc2": "mlp.weights_out"}  # fc1 = [gate; up]

    def block_names(self):
        return {**self.hf_names, **(self.swiglu_names if self.mlp == "swiglu" else {})}


@_ser
@register_backbone("dinov2_with_registers")
class Dinov2WithRegistersBackbone(Dinov2Backbone):
    """DINOv2 plus register tokens after [CLS]; positions resized with the anti-aliased kernel."""

    spec_cls = Dinov2WithRegistersSpec
    base_model_prefix = "dinov2_with_registers"
    hf_architecture = "Dinov2WithRegistersModel"
