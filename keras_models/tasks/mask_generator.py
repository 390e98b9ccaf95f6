"""MaskGenerator: promptable segmentation (Transformers' "mask-generation" models: SAM).

Calling the model on ``{"pixel_values", "input_points", "input_labels", "input_boxes",
"input_masks"}`` (any of the prompts; ``image_embeddings`` from :meth:`get_image_embeddings` may
replace ``pixel_values``) returns ``{"iou_scores", "pred_masks"}`` as Transformers'
``SamModel`` does:

* ``pixel_values`` (batch, H, W, 3), channels_last, as the image processor makes them;
* ``input_points`` (batch, point_batch, points, 2) in the resized image's pixel (x, y)
  coordinates, ``input_labels`` (batch, point_batch, points): 1 foreground, 0 background,
  -1 not a point, -10 padding (all 1 when omitted);
* ``input_boxes`` (batch, boxes, 4) as (x1, y1, x2, y2); with points, boxes pair with the point
  batches (boxes == point_batch);
* ``input_masks`` (batch, 4g, 4g) low-resolution mask logits (g = the image-embedding grid).

``iou_scores`` is (batch, point_batch, masks) and ``pred_masks`` (batch, point_batch, masks,
4g, 4g) low-resolution logits in Transformers' layout (the mask index is not a channel axis);
``masks`` is 3 with ``multimask_output`` (the constructor's default, or the call's keyword) and 1
without. ``post_process_masks`` (the preprocessor's) upsamples them to the original images and
binarises them as Transformers' image processor does.
"""

import keras

from keras_models.tasks.task import Task


@keras.saving.register_keras_serializable(package="keras_models")
class MaskGenerator(Task):
    task_name = "MaskGenerator"
    default_learning_rate = 1e-5

    def __init__(self, backbone, preprocessor=None, multimask_output=True, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        self.multimask_output = bool(multimask_output)

    def get_image_embeddings(self, pixel_values):
        """The image encoder's output (batch, g, g, channels), channels_last: pass it back as
        ``image_embeddings`` to prompt the same images again without re-encoding them."""
        if keras.backend.backend() != "torch":
            return self.backbone({"pixel_values": pixel_values})
        import torch

        # no autograd graph: it costs memory, and a relative-position bias that needs grad rules out
        # SDPA's fused CPU kernel (no_grad, not inference_mode: the embeddings stay usable anywhere)
        with torch.no_grad():
            return self.backbone({"pixel_values": pixel_values})

    def post_process_masks(self, masks, original_sizes, reshaped_input_sizes, **kwargs):
        if self.preprocessor is None:
            from keras_models.errors import InputError

            raise InputError(f"{type(self).__name__}: post_process_masks needs the preset's image processor "
                             "(preprocessor_config.json)")
        return self.preprocessor.post_process_masks(masks, original_sizes, reshaped_input_sizes, **kwargs)

    def save_extra_files(self, folder):
        if self.preprocessor is not None and hasattr(self.preprocessor, "save_pretrained"):
            self.preprocessor.save_pretrained(folder)

    def get_config(self):
        c = super().get_config()
        c["multimask_output"] = self.multimask_output
        return c


__all__ = ["MaskGenerator"]
