"""Records tests/vision/removed_golden/nat/ (the NAT references of tests/vision/test_dinat.py).

NAT was removed from Transformers 5, so its outputs were recorded once with Transformers 4.57.1
(models/deprecated/nat), e.g.:
    pip install --no-deps --target /tmp/tf4 transformers==4.57.1 huggingface_hub==0.36.0 tokenizers==0.22.1
    PYTHONPATH=/tmp/tf4 python tests/vision/removed_golden/record_nat.py

NATTEN (which NAT calls) has no CPU build with the functions 4.57.1 imports on PyPI, so the
brute-force stand-in of tests/vision/natten_reference.py is patched in. Two tiny checkpoints:
nat/ImageClassifier (NatForImageClassification: layer scale, a map smaller than the kernel in
the last stage, gelu_new) and nat/Backbone (NatBackbone with out_features stem + stage2, kernel 5,
no qkv bias). nat.npz: ``pixel_values`` (channels_last), ``logits``, ``hidden`` (NatModel's
last_hidden_state, (batch, h, w, C)) and ``feature_map_<i>`` (channels_last). Weights are
re-drawn with tests/parity.py's ``randomize_weights`` (unit-scale activations, relative position
tables N(0, 1)), and outputs are computed after reloading the saved files.
"""

import shutil
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parents[2]))

from tests.parity import randomize_weights  # noqa: E402
from tests.vision import natten_reference  # noqa: E402


def pixels(batch, height, width, seed=0):
    return np.random.RandomState(seed).randn(batch, height, width, 3).astype("float32")


def main():
    import transformers
    from transformers.models.deprecated.nat import modeling_nat

    modeling_nat.natten2dqkrpb = natten_reference.natten2dqkrpb
    modeling_nat.natten2dav = natten_reference.natten2dav
    modeling_nat.requires_backends = lambda *a, **k: None

    x = pixels(2, 36, 44)
    px = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    arrays = {"pixel_values": x}
    configs = {
        "ImageClassifier": (transformers.NatForImageClassification, transformers.NatConfig(
            embed_dim=4, depths=[2, 1, 1, 1], num_heads=[1, 2, 2, 4], kernel_size=3, mlp_ratio=2.0, hidden_act="gelu_new",
            layer_norm_eps=1e-6, layer_scale_init_value=0.5, num_labels=3)),
        "Backbone": (transformers.NatBackbone, transformers.NatConfig(
            embed_dim=8, depths=[1, 2], num_heads=[1, 2], kernel_size=5, qkv_bias=False,
            out_features=["stem", "stage2"])),
    }
    for task, (cls, config) in configs.items():
        torch.manual_seed(0)
        model = randomize_weights(cls(config).eval())
        folder = HERE / "nat" / task
        if folder.exists():
            shutil.rmtree(folder)
        model.save_pretrained(folder, safe_serialization=True)
        model = cls.from_pretrained(folder).eval()
        with torch.no_grad():
            if task == "ImageClassifier":
                arrays["logits"] = model(pixel_values=px).logits.numpy()
                arrays["hidden"] = model.nat(pixel_values=px).last_hidden_state.numpy()
            else:
                for i, m in enumerate(model(pixel_values=px).feature_maps):
                    arrays[f"feature_map_{i}"] = m.numpy().transpose(0, 2, 3, 1)
    np.savez(HERE / "nat.npz", **arrays)
    print("recorded nat:", {k: v.shape for k, v in arrays.items()})


if __name__ == "__main__":
    main()
