"""Records tests/pipelines/removed_golden/image_to_image/ (a tiny Swin2SR x2 super-resolution model, its
image processor and two PNG images) and image_to_image.npz: the images that Transformers' "image-to-image"
pipeline, which Transformers 5 removed, returns for them (as uint8 arrays), recorded once with
Transformers 4.57.1:
    PYTHONPATH=/tmp/tf4 python tests/pipelines/removed_golden/record_image_to_image.py
"""

import os
import shutil
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("USE_TF", "0")  # Transformers 4 would import TensorFlow (Keras 3 here)
HERE = Path(__file__).parent


def main():
    import transformers as T
    from PIL import Image

    folder = HERE / "image_to_image"
    if folder.exists():
        shutil.rmtree(folder)
    torch.manual_seed(0)
    config = T.Swin2SRConfig(upsampler="pixelshuffledirect", upscale=2, depths=[1], num_heads=[2], embed_dim=8,
                             window_size=4, image_size=16, mlp_ratio=1.5)
    model = T.Swin2SRForImageSuperResolution(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    model.save_pretrained(folder / "model", safe_serialization=True)
    T.Swin2SRImageProcessor(pad_size=4).save_pretrained(folder / "model")
    rng = np.random.RandomState(0)
    for i, size in enumerate([(14, 18), (12, 12)]):
        Image.fromarray(rng.randint(0, 255, size=size + (3,), dtype=np.uint8)).save(folder / f"img{i}.png")
    pipe = T.pipeline("image-to-image", model=str(folder / "model"), device="cpu")
    outputs = {f"img{i}": np.asarray(pipe(str(folder / f"img{i}.png"))) for i in range(2)}
    both = pipe([str(folder / f"img{i}.png") for i in range(2)])
    for i, image in enumerate(both):
        assert (np.asarray(image) == outputs[f"img{i}"]).all()
    np.savez_compressed(HERE / "image_to_image.npz", **outputs)
    print({k: (v.shape, v.dtype, int(v.min()), int(v.max())) for k, v in outputs.items()}, T.__version__)


if __name__ == "__main__":
    main()
