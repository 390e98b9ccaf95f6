"""depth-estimation over a DepthEstimator and its image processor, as Transformers' pipeline: per
image ``{"predicted_depth": (H, W) float32 numpy map resized (bicubic) to the image's size,
"depth": a PIL "L" image of that map min-max scaled to 0..255}``. Images: file paths, PIL images
or (height, width, channels) arrays; several images give a list."""

from __future__ import annotations

import numpy as np

from keras_models.pipelines.image import ImagePipeline


class DepthEstimationPipeline(ImagePipeline):
    task = "depth-estimation"
    call_params = ("timeout",)

    def preprocess(self, item, **_):
        from keras_models.preprocessing.image_io import load_image

        image = load_image(item)
        return [{"pixel_values": self.image_processor([image])["pixel_values"][0], "size": image.shape[:2]}]

    def postprocess(self, item, chunks, outputs, **_):
        from keras_models.preprocessing.image_io import pil

        depth = np.asarray(outputs[0], np.float32)[None]
        out = self.model.post_process_depth_estimation(depth, target_sizes=[chunks[0]["size"]])[0]["predicted_depth"]
        scaled = (out - out.min()) / (out.max() - out.min())
        return {"predicted_depth": out, "depth": pil().fromarray((scaled * 255).astype("uint8"))}


__all__ = ["DepthEstimationPipeline"]
