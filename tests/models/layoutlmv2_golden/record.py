"""Records tests/models/layoutlmv2_golden/ (the references of tests/models/test_layoutlmv2.py).

Transformers' LayoutLMv2 builds its visual backbone (a ResNet-FPN) with detectron2, which is not
installable here as a test dependency: the only PyPI build, ``detectron2-cdo`` 0.5, is an sdist
without its C++ sources (``layers/csrc``), and detectron2 imports torchvision, whose wheels do not
load against this CPU torch. The references were recorded once, with Transformers 5.25 and that
sdist's pure-Python package (its C++ ops - deformable conv, rotated boxes - and every torchvision
op are used by detection heads only, never by the backbone's forward pass):

    pip download --no-deps detectron2-cdo==0.5 && tar xzf detectron2_cdo-0.5.tar.gz
    pip install --no-deps --target /tmp/d2site "fvcore==0.1.5.post20221221" "iopath==0.1.9" yacs tabulate \
        portalocker "omegaconf==2.3.0" "hydra-core==1.3.2" "antlr4-python3-runtime==4.9.3" pycocotools
    cp -r detectron2_cdo-0.5/detectron2 /tmp/d2site/
    PYTHONPATH=/tmp/d2site:tests/models/layoutlmv2_golden/d2shim:. python tests/models/layoutlmv2_golden/record.py

``d2shim/`` stands in for torchvision and ``detectron2._C``: every attribute is a placeholder
whose call raises, so a forward pass that needed one would fail instead of recording.

Each case: <case>/ (the LayoutLMv2Model's config.json + model.safetensors), <case>.npz (inputs:
``input_ids``, ``bbox``, ``attention_mask``, ``token_type_ids``, ``pixel_values`` channels_last, uint8;
output ``last_hidden_state``) and, for the heads, <case>_<head>/ (config.json + head.safetensors:
the head model's tensors that are not the base model's, so the test assembles the checkpoint) with
the head's outputs in <case>.npz (``<head>.logits`` / ``<head>.start_logits`` ...).
"""

import importlib
import json
import shutil
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).parent


def _pil_compat():
    from PIL import Image  # detectron2 0.5 names resampling filters Pillow 10 removed

    for old, new in (("LINEAR", "BILINEAR"), ("CUBIC", "BICUBIC"), ("ANTIALIAS", "LANCZOS")):
        if not hasattr(Image, old):
            setattr(Image, old, getattr(Image, new))


_pil_compat()
importlib.import_module("torchvision")  # the shim, before Transformers looks for detectron2


def d2_args(**extra):
    import transformers as T

    args = T.LayoutLMv2Config.get_default_detectron2_config()
    args.update({"MODEL.RESNETS.DEPTH": 50, "MODEL.RESNETS.NUM_GROUPS": 1, "MODEL.RESNETS.WIDTH_PER_GROUP": 1,
                 "MODEL.RESNETS.STEM_OUT_CHANNELS": 4, "MODEL.RESNETS.RES2_OUT_CHANNELS": 4,
                 "MODEL.FPN.OUT_CHANNELS": 8})
    args.update(extra)
    return args


TEXT = dict(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=20,
            max_position_embeddings=64, max_2d_position_embeddings=1001, coordinate_size=2, shape_size=4,
            rel_pos_bins=8, max_rel_pos=16, rel_2d_pos_bins=8, max_rel_2d_pos=64)
CASES = {
    # Transformers' defaults (fast_qkv, both attention biases), a 7x7 grid over a 32x32 map
    "base": dict(options=dict(image_feature_pool_shape=[7, 7, 8]), size=(128, 128),
                 heads=("sequence", "token", "qa")),
    # separate q/k/v, spatial bias without the 1D one, visual segment embedding, ResNeXt groups with
    # the stride in the 1x1 conv, a 3x3 grid over an uneven 24x16 feature map (adaptive bins)
    "odd": dict(options=dict(image_feature_pool_shape=[3, 3, 8], fast_qkv=False, has_relative_attention_bias=False,
                             has_visual_segment_embedding=True, hidden_act="gelu_new",
                             detectron2_config_args=d2_args(**{"MODEL.RESNETS.NUM_GROUPS": 2,
                                                               "MODEL.RESNETS.WIDTH_PER_GROUP": 1,
                                                               "MODEL.RESNETS.STRIDE_IN_1X1": True,
                                                               "MODEL.PIXEL_MEAN": [100.0, 110.0, 120.0]})),
                size=(96, 64), heads=()),
}
HEADS = {"sequence": ("LayoutLMv2ForSequenceClassification", dict(num_labels=3)),
         "token": ("LayoutLMv2ForTokenClassification", dict(num_labels=4)),
         "qa": ("LayoutLMv2ForQuestionAnswering", {})}


def _randomize(model):
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g) * 0.2)
            elif name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g) + 0.5)
    return model


def inputs(size):
    rng = np.random.RandomState(0)
    ids = rng.randint(3, 50, (2, 9))
    ids[:, 0] = 1
    mask = np.ones((2, 9), "int64")
    mask[1, 6:] = 0
    ids[1, 6:] = 0
    x0, y0 = rng.randint(0, 600, (2, 9)), rng.randint(0, 600, (2, 9))
    bbox = np.stack([x0, y0, x0 + rng.randint(0, 300, (2, 9)), y0 + rng.randint(0, 300, (2, 9))], -1)
    types = np.zeros((2, 9), "int64")
    types[0, 5:] = 1
    pixels = rng.randint(0, 256, (2, size[0], size[1], 3)).astype("uint8")  # as a processor's (0..255)
    return dict(input_ids=ids, bbox=bbox, attention_mask=mask, token_type_ids=types, pixel_values=pixels)


def _torch_inputs(x):
    out = {k: torch.tensor(v) for k, v in x.items() if k != "pixel_values"}
    out["image"] = torch.tensor(x["pixel_values"].astype("float32")).permute(0, 3, 1, 2).contiguous()
    return out


def record(name, case):
    import transformers as T
    from safetensors.torch import save_file

    options = dict(case["options"])
    options.setdefault("detectron2_config_args", d2_args())
    config = T.LayoutLMv2Config(**TEXT, **options)
    torch.manual_seed(0)
    model = _randomize(T.LayoutLMv2Model(config).eval())
    folder = HERE / name
    if folder.exists():
        shutil.rmtree(folder)
    model.save_pretrained(folder, safe_serialization=True)
    model = T.LayoutLMv2Model.from_pretrained(folder).eval()
    x = inputs(case["size"])
    out = {f"input.{k}": v for k, v in x.items()}
    with torch.no_grad():
        out["last_hidden_state"] = model(**_torch_inputs(x)).last_hidden_state.numpy()
    base = {k: v for k, v in model.state_dict().items()}
    for head in case["heads"]:
        cls_name, extra = HEADS[head]
        cls = getattr(T, cls_name)
        hconfig = T.LayoutLMv2Config(**TEXT, **options, **extra)
        torch.manual_seed(1)
        hmodel = cls(hconfig).eval()
        missing = hmodel.layoutlmv2.load_state_dict(base, strict=False)
        assert not missing.unexpected_keys, missing
        _randomize_head(hmodel)
        hfolder = HERE / f"{name}_{head}"
        if hfolder.exists():
            shutil.rmtree(hfolder)
        tmp = HERE / f"_tmp_{head}"
        hmodel.save_pretrained(tmp, safe_serialization=True)
        hmodel = cls.from_pretrained(tmp).eval()
        hfolder.mkdir()
        shutil.copy(tmp / "config.json", hfolder / "config.json")
        shutil.rmtree(tmp)
        delta = {k: v.contiguous() for k, v in hmodel.state_dict().items()
                 if not (k.startswith("layoutlmv2.") and k[len("layoutlmv2."):] in base
                         and torch.equal(base[k[len("layoutlmv2."):]], v))
                 and "pixel_" not in k and "position_ids" not in k}
        save_file(delta, str(hfolder / "head.safetensors"), metadata={"format": "pt"})
        with torch.no_grad():
            res = hmodel(**_torch_inputs(x))
        for key in ("logits", "start_logits", "end_logits"):
            if getattr(res, key, None) is not None:
                out[f"{head}.{key}"] = getattr(res, key).numpy()
        print(name, head, sorted(delta))
    np.savez_compressed(HERE / f"{name}.npz", **out)
    print(name, json.loads((folder / "config.json").read_text())["image_feature_pool_shape"])


def _randomize_head(model):
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not name.startswith("layoutlmv2.") or "visual_segment" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)


if __name__ == "__main__":
    import transformers as T

    importlib.import_module("detectron2.modeling")  # fails loudly if detectron2 cannot be imported
    assert T.utils.is_detectron2_available()
    for name, case in CASES.items():
        record(name, case)
