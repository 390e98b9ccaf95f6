"""Records tests/vision/detr_timm_golden/ (the references of tests/vision/test_detection_timm.py).

DETR-family hub checkpoints (facebook/detr-resnet-50, ...) use a timm ResNet as backbone
(``use_timm_backbone``), which Transformers builds with the ``timm`` package. timm is not a test
dependency here (it needs torchvision, whose PyPI wheels cannot load against this CPU torch), so
the references were recorded once, with Transformers 5.25, timm 1.0.31 and an import shim for
torchvision (``tvshim/``: timm imports torchvision's datasets and transforms at import time; no
torchvision code runs in a ResNet's forward pass):

    pip install --no-deps --target /tmp/timm_t timm==1.0.31
    PYTHONPATH=/tmp/timm_t:tests/vision/detr_timm_golden/tvshim:. python tests/vision/detr_timm_golden/record.py

A timm ResNet's widths are fixed by its name (resnet50 holds 23M values), so ``timm.create_model``
is called here with the name's block type and smaller widths and depths (``channels``,
``layers``, ``stem_width``: timm's own arguments); the checkpoint is what such a model saves, with
timm's tensor names, and config.json names the architecture (``resnet50`` / ``resnet18``). The
library reads a timm ResNet's widths and depths from the checkpoint's tensors, so it loads these
as it loads the full-size ones.

Each case: a folder <case>/ (config.json + model.safetensors, a few KB) and <case>.npz with the
inputs (``pixel_values`` channels_last, ``pixel_mask``) and the outputs (``logits``,
``pred_boxes``, ``last_hidden_state``, ``encoder_last_hidden_state``) of the reloaded model.
"""

import shutil
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).parent
TINY = {"resnet50": dict(layers=(1, 2, 1, 1), channels=(2, 4, 4, 4), stem_width=8),
        "resnet18": dict(layers=(1, 1, 2, 1), channels=(4, 8, 8, 12), stem_width=6)}
CASES = {
    # bottleneck blocks, sine positions, auxiliary_loss (a LayerNorm between decoder layers)
    "detr_resnet50": dict(backbone="resnet50", auxiliary_loss=True, decoder_layers=2),
    # basic blocks, learned positions
    "detr_resnet18": dict(backbone="resnet18", position_embedding_type="learned", decoder_layers=1),
}


def tiny_timm():
    import timm

    real = timm.create_model

    def create_model(name, *args, **kwargs):
        return real(name, *args, **{**kwargs, **TINY[name]})

    timm.create_model = create_model
    import transformers.models.timm_backbone.modeling_timm_backbone as mtb

    mtb.timm.create_model = create_model


def inputs():
    rng = np.random.RandomState(0)
    mask = np.ones((2, 50, 44), "int64")
    mask[1, 37:], mask[1, :, 30:] = 0, 0  # the second image is 37x30, padded
    return rng.randn(2, 50, 44, 3).astype("float32"), mask


def record(name, options):
    import transformers as T

    from tests.vision.test_detection import _randomize

    config = T.DetrConfig(use_timm_backbone=True, use_pretrained_backbone=False, d_model=16, encoder_layers=1,
                          encoder_ffn_dim=20, decoder_ffn_dim=24, encoder_attention_heads=2, decoder_attention_heads=4,
                          num_queries=7, num_labels=3, **options)
    torch.manual_seed(0)
    model = _randomize(T.DetrForObjectDetection(config).eval())
    folder = HERE / name
    if folder.exists():
        shutil.rmtree(folder)
    model.save_pretrained(folder, safe_serialization=True)
    model = T.DetrForObjectDetection.from_pretrained(folder).eval()
    pixels, mask = inputs()
    with torch.no_grad():
        out = model(pixel_values=torch.tensor(pixels.transpose(0, 3, 1, 2)), pixel_mask=torch.tensor(mask))
    np.savez(HERE / f"{name}.npz", pixel_values=pixels, pixel_mask=mask,
             **{k: out[k].numpy() for k in ("logits", "pred_boxes", "last_hidden_state", "encoder_last_hidden_state")})


if __name__ == "__main__":
    tiny_timm()
    for case in sys.argv[1:] or CASES:
        record(case, CASES[case])
