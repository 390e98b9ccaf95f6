"""InContextSegmenter: segmentation from an example (Transformers' ``SegGptForImageSegmentation``).

Calling the model on ``{"pixel_values", "prompt_pixel_values", "prompt_masks"}`` -- the image to
segment, an example image and that example's mask rendered as an RGB image, each (batch, H, W, 3)
channels_last and normalised as the image processor makes them -- returns ``pred_masks``
(batch, 2H, W, 3), channels_last: the model's reconstruction of the example's mask (top half) above
the predicted mask of the image (bottom half), Transformers' ``pred_masks`` transposed.
``feature_ensemble`` (several prompts for one image: the batch holds the image once per prompt)
and ``embedding_type`` ("instance" or "semantic") are call keywords, defaulting to the
constructor's values.
"""

import keras

from keras_models.tasks.task import Task


@keras.saving.register_keras_serializable(package="keras_models")
class InContextSegmenter(Task):
    task_name = "InContextSegmenter"
    default_learning_rate = 1e-5

    def __init__(self, backbone, preprocessor=None, feature_ensemble=False, embedding_type="instance", **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        self.feature_ensemble, self.embedding_type = bool(feature_ensemble), embedding_type

    def post_process_semantic_segmentation(self, pred_masks, target_sizes=None, num_labels=None):
        """Class maps per image (the preset's image processor's post-processing)."""
        if self.preprocessor is None:
            from keras_models.errors import InputError

            raise InputError(f"{type(self).__name__}: post-processing needs the preset's image processor "
                             "(preprocessor_config.json)")
        return self.preprocessor.post_process_semantic_segmentation(pred_masks, target_sizes, num_labels)

    def save_extra_files(self, folder):
        if self.preprocessor is not None and hasattr(self.preprocessor, "save_pretrained"):
            self.preprocessor.save_pretrained(folder)

    def get_config(self):
        c = super().get_config()
        c.update(feature_ensemble=self.feature_ensemble, embedding_type=self.embedding_type)
        return c


__all__ = ["InContextSegmenter"]
