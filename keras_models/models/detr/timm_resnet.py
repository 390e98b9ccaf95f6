"""timm ResNet backbones of DETR-family checkpoints (``use_timm_backbone``, as facebook/detr-resnet-50,
microsoft/conditional-detr-resnet-50 and microsoft/table-transformer-detection hold).

A timm ``resnet18/34/26/50/101/152`` is the torchvision-style ResNet: a 7x7/2 stem conv + BatchNorm
+ ReLU + 3x3/2 max pool, then stages of basic or bottleneck blocks with the stride on the 3x3 conv
and a 1x1 conv + BatchNorm projection shortcut. That is Transformers' ResNet (our
:class:`~keras_models.models.resnet.ResNetBackbone`) with ``downsample_in_bottleneck=False``, so a
timm backbone is built as that ResNet and only its tensor names differ (``conv1`` / ``bn1``,
``layer{s}.{b}.conv{k}`` / ``bn{k}``, ``layer{s}.{b}.downsample.0`` / ``.1``).

The config names the architecture (config.json ``backbone``, or a ``backbone_config`` of
model_type ``timm_backbone``). The widths and depths are read from the checkpoint's tensors when
the preset folder holds one (what the weights are, whatever the name says), else from the name.
Variants with another stem or shortcut (``resnet50d``'s deep stem and pooled shortcut, wide
ResNets' bottleneck width) and dilated last stages (``dilation`` / ``output_stride``) raise
ConfigError naming the key.
"""

from __future__ import annotations

import re
from pathlib import Path

from keras_models.errors import ConfigError

# name -> (block type, depths); widths: basic 64..512, bottleneck 256..2048, stem 64
TIMM_RESNETS = {"resnet18": ("basic", (2, 2, 2, 2)), "resnet34": ("basic", (3, 4, 6, 3)),
                "resnet26": ("bottleneck", (2, 2, 2, 2)), "resnet50": ("bottleneck", (3, 4, 6, 3)),
                "resnet101": ("bottleneck", (3, 4, 23, 3)), "resnet152": ("bottleneck", (3, 8, 36, 3))}
_NAME = re.compile(r"^(?:timm/)?(resnet\d+)(?:\.[\w]+)?$")  # "resnet50", "timm/resnet50.a1_in1k"


def timm_backbone_of(config, source):
    """The timm backbone a DETR-like config.json asks for, as {"backbone", "out_indices",
    "output_stride"}, or None (a Transformers backbone_config)."""
    bb = config.get("backbone_config")
    if bb is None and config.get("use_timm_backbone", True):
        return {"backbone": config.get("backbone") or "resnet50", "out_indices": [1, 2, 3, 4],
                "output_stride": 16 if config.get("dilation") else None, "key": "backbone"}
    if isinstance(bb, dict) and bb.get("model_type") == "timm_backbone":
        return {"backbone": bb.get("backbone"), "out_indices": bb.get("out_indices") or [4],
                "output_stride": bb.get("output_stride"), "key": "backbone_config.backbone"}
    return None


def timm_resnet_config(timm, source):
    """A Transformers ResNet config dict equal to the timm ResNet ``timm`` describes."""
    name = timm["backbone"]
    match = _NAME.match(name) if isinstance(name, str) else None
    if match is None or match.group(1) not in TIMM_RESNETS:
        raise ConfigError(f"{source}: {timm['key']}={name!r} is not supported (timm backbones implemented: "
                          f"{sorted(TIMM_RESNETS)})")
    if timm.get("output_stride") not in (None, 32):
        raise ConfigError(f"{source}: a dilated timm ResNet (dilation / output_stride="
                          f"{timm['output_stride']}) is not implemented")
    outs = timm["out_indices"]
    if not isinstance(outs, (list, tuple)) or not outs or not all(isinstance(i, int) and 1 <= i <= 4 for i in outs):
        raise ConfigError(f"{source}: backbone_config.out_indices={outs!r} must name stages 1-4")
    layer_type, depths = TIMM_RESNETS[match.group(1)]
    widths = (64, 128, 256, 512) if layer_type == "basic" else (256, 512, 1024, 2048)
    config = {"model_type": "resnet", "layer_type": layer_type, "depths": list(depths), "hidden_sizes": list(widths),
              "embedding_size": 64, "downsample_in_bottleneck": False, "out_features": [f"stage{max(outs)}"]}
    shapes = _checkpoint_shapes(source)
    if shapes:
        config.update(_from_tensors(shapes, layer_type, source))
    return config


def _checkpoint_shapes(source):
    """{name: shape} of the timm ResNet's tensors in the preset folder of ``source`` (config.json's
    path), with the names from ``conv1.weight`` on; {} when there is no checkpoint there."""
    from keras_models.presets.safetensors_io import CheckpointReader

    path = Path(str(source).split(" [")[0])
    folder = path.parent if path.name == "config.json" else None
    if folder is None or not (list(folder.glob("*.safetensors"))):
        return {}
    reader = CheckpointReader(folder)
    try:
        out = {}
        for key in reader.keys():
            m = re.search(r"(?:^|\.)backbone\.(?:conv_encoder\.)?model\.((?:conv1|bn1|layer\d+)\..*)$", key)
            if m:
                out[m.group(1)] = tuple(reader.shape(key))
        return out
    finally:
        reader.close()


def _from_tensors(shapes, layer_type, source):
    if "conv1.weight" not in shapes or len(shapes["conv1.weight"]) != 4 or shapes["conv1.weight"][2:] != (7, 7):
        raise ConfigError(f"{source}: the checkpoint's timm ResNet has no single 7x7 stem conv (conv1.weight): "
                          "only the plain ResNet stem is implemented")
    stem = shapes["conv1.weight"][0]
    depths, widths = [], []
    for s in range(1, 5):
        blocks = sorted({int(m.group(1)) for k in shapes for m in [re.match(rf"layer{s}\.(\d+)\.", k)] if m})
        if not blocks:
            break
        depths.append(len(blocks))
        last = "conv3" if layer_type == "bottleneck" else "conv2"
        key = f"layer{s}.0.{last}.weight"
        if key not in shapes:
            raise ConfigError(f"{source}: the checkpoint's timm ResNet lacks {key} (a {layer_type} block)")
        widths.append(shapes[key][0])
        if layer_type == "bottleneck" and shapes[f"layer{s}.0.conv1.weight"][0] * 4 != widths[-1]:
            raise ConfigError(f"{source}: layer{s}'s bottleneck width is not a quarter of its output (a wide "
                              "ResNet): not implemented")
        shortcut = [k for k in shapes if k.startswith(f"layer{s}.0.downsample.")]
        if shortcut and f"layer{s}.0.downsample.0.weight" not in shapes:
            raise ConfigError(f"{source}: layer{s}'s shortcut is not a 1x1 conv + BatchNorm (an average-pooled "
                              "shortcut): not implemented")
    return {"embedding_size": stem, "depths": depths, "hidden_sizes": widths}


_RULE = re.compile(r"^encoder\.stages\.(\d+)\.layers\.(\d+)\.(shortcut|layer\.(\d+))\.(convolution|normalization)\.(\w+)$")


def timm_tensor_name(name):
    """Our ResNet's tensor name (Transformers' ResNet naming) -> the timm ResNet's."""
    if name.startswith("embedder.embedder."):
        part, leaf = name[len("embedder.embedder."):].split(".", 1)
        return ("conv1." if part == "convolution" else "bn1.") + leaf
    m = _RULE.match(name)
    if m is None:
        raise ValueError(f"not a ResNet tensor name: {name}")
    stage, block, where, k, kind, leaf = m.groups()
    head = f"layer{int(stage) + 1}.{block}."
    if where == "shortcut":
        return head + ("downsample.0." if kind == "convolution" else "downsample.1.") + leaf
    return head + ("conv" if kind == "convolution" else "bn") + f"{int(k) + 1}." + leaf


def timm_backbone_config(name, out_indices, num_channels):
    """The ``backbone_config`` Transformers 5 writes for a timm backbone."""
    return {"model_type": "timm_backbone", "backbone": name, "out_indices": list(out_indices),
            "features_only": True, "num_channels": num_channels, "use_pretrained_backbone": False,
            "output_stride": None}
