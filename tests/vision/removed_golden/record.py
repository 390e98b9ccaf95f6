"""Records tests/vision/removed_golden/ (the references of tests/vision/test_vision_removed.py).

VAN, ViT Hybrid and EfficientFormer were removed from Transformers 5, so their outputs were
recorded once with Transformers 4.57.1 (models/deprecated/...), e.g.:
    pip install --no-deps --target /tmp/tf4 transformers==4.57.1 huggingface_hub==0.36.0 tokenizers==0.22.1
    PYTHONPATH=/tmp/tf4 python tests/vision/removed_golden/record.py [family ...]

Each family gets a folder <family>/ holding one tiny image-classification checkpoint
(config.json + model.safetensors, a few KB) and <family>.npz holding the input ``pixel_values``
(channels_last, as our models take them), the reference ``logits`` and ``hidden`` (the last of
the model's hidden states). Models are seeded, every float parameter is perturbed by
randn * 0.02 (as tests/parity.py does), BatchNorm statistics are moved off 0 / 1, and outputs
are computed after reloading the saved files.
"""

import shutil
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).parent


def pixels(batch, height, width, seed=0):
    return np.random.RandomState(seed).randn(batch, height, width, 3).astype("float32")


def save(cls, config, folder, seed=0):
    """Build ``cls(config)`` seeded and perturbed, save it to ``folder``, reload it from there."""
    torch.manual_seed(seed)
    model = cls(config).eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.parameters():
            if p.is_floating_point():
                p.add_(torch.randn_like(p) * 0.02)
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.add_(torch.randn(b.shape, generator=g) * 0.1)
            elif name.endswith("running_var"):
                b.mul_(torch.rand(b.shape, generator=g) + 0.5)
    if folder.exists():
        shutil.rmtree(folder)
    model.save_pretrained(folder, safe_serialization=True)
    return cls.from_pretrained(folder).eval()


def record(name, cls, config, x, base=None):
    """``base``: the base model's attribute, whose ``last_hidden_state`` is recorded as ``hidden``
    (default: the last of the classifier's hidden states)."""
    model = save(cls, config, HERE / name)
    px = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    with torch.no_grad():
        out = model(pixel_values=px, output_hidden_states=True)
        hidden = getattr(model, base)(pixel_values=px).last_hidden_state if base else out.hidden_states[-1]
    np.savez(HERE / f"{name}.npz", pixel_values=x, logits=out.logits.float().numpy(), hidden=hidden.float().numpy())


def van():
    import transformers

    cfg = transformers.VanConfig(
        patch_sizes=[7, 3], strides=[4, 2], hidden_sizes=[8, 12], depths=[1, 2], mlp_ratios=[2, 3],
        hidden_act="gelu_new", layer_norm_eps=1e-5, layer_scale_init_value=0.3, num_labels=3)
    record("van", transformers.VanForImageClassification, cfg, pixels(2, 22, 26))


def vit_hybrid():
    import transformers
    from transformers.models.deprecated.vit_hybrid import modeling_vit_hybrid as mvh

    # Transformers 4.57.1 cannot build ViTHybridModel without a mask token (its _init_weights zeroes
    # ``mask_token`` unconditionally); skip that module's init here (every weight is re-drawn and
    # perturbed by ``save`` anyway).
    original = mvh.ViTHybridPreTrainedModel._init_weights

    def init_weights(self, module):
        if not (isinstance(module, mvh.ViTHybridEmbeddings) and module.mask_token is None):
            original(self, module)

    mvh.ViTHybridPreTrainedModel._init_weights = init_weights
    bit = dict(global_padding="same", layer_type="bottleneck", depths=[1, 1, 1], hidden_sizes=[16, 24, 32],
               embedding_size=8, num_groups=4, out_features=["stage2"], embedding_dynamic_padding=True)
    cfg = transformers.ViTHybridConfig(
        backbone_config=bit, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24,
        image_size=32, patch_size=2, backbone_featmap_shape=[1, 24, 4, 4], layer_norm_eps=1e-6, qkv_bias=False,
        hidden_act="gelu_new", num_labels=3)
    record("vit_hybrid", transformers.ViTHybridForImageClassification, cfg, pixels(2, 32, 32), base="vit")


def efficientformer():
    import transformers

    # 24x24 -> 6x6 stem -> 3x3 (= resolution); no embedding between the first two stages
    cfg = transformers.EfficientFormerConfig(
        depths=[1, 1, 3], hidden_sizes=[8, 8, 16], downsamples=[False, True, True], dim=16, key_dim=4,
        attention_ratio=2, resolution=3, num_attention_heads=2, mlp_expansion_ratio=2, num_meta3d_blocks=2,
        layer_scale_init_value=0.5, hidden_act="gelu_new", layer_norm_eps=1e-6, num_labels=3,
        hidden_size=16)  # the WithTeacher heads read config.hidden_size
    record("efficientformer", transformers.EfficientFormerForImageClassificationWithTeacher, cfg, pixels(2, 24, 24),
           base="efficientformer")


FAMILIES = {"van": van, "vit_hybrid": vit_hybrid, "efficientformer": efficientformer}

if __name__ == "__main__":
    for family in sys.argv[1:] or FAMILIES:
        FAMILIES[family]()
        print("recorded", family)
