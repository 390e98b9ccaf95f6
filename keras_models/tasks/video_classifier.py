"""VideoClassifier: a video backbone, its pooling rule and a linear head.

``km.VideoClassifier.from_preset(folder)`` resolves the family from config.json (VideoMAE,
TimeSformer, ViViT). Inputs: ``{"pixel_values": (batch, frames, height, width, channels)}``
(channels_last, normalised by the checkpoint's :class:`~keras_models.preprocessing.video.VideoProcessor`)
or the array itself; output: logits (batch, classes). ``predict`` / ``fit`` / ``evaluate`` also
take raw videos (uint8 arrays (batch, frames, H, W, C), or a list of videos, each a
(frames, H, W, C) array or a list of frames) and run them through the preprocessor. The user
samples the frames: each video must have the model's ``num_frames``.

Pooling (the backbone says which, ``backbone.classifier_pooling``):
  * ``"cls"``: the first token (TimeSformer and ViViT [CLS]; VideoMAE without mean pooling reads
    its first patch token, as Transformers does);
  * ``"mean"``: the mean of every token, then ``fc_norm`` (LayerNorm, eps 1e-5; VideoMAE).
"""

import keras
import numpy as np
from keras import ops

from keras_models.errors import InputError
from keras_models.layers.vision_embeddings import dense_rules, norm_rules
from keras_models.tasks.image_classifier import ImageTask


def _is_raw_videos(x):
    """uint8 arrays / lists of videos go through the preprocessor; float arrays are pixel_values."""
    if isinstance(x, np.ndarray):
        return x.dtype == np.uint8
    return isinstance(x, (list, tuple)) and len(x) > 0 and not isinstance(x[0], (int, float, np.number))


@keras.saving.register_keras_serializable(package="keras_models")
class VideoClassifier(ImageTask):
    task_name = "VideoClassifier"
    hf_out = "classifier"
    hf_head_patterns = ("classifier.*", "fc_norm.*")

    def __init__(self, backbone, num_classes=2, id2label=None, dropout=0.0, pooling=None, preprocessor=None,
                 **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        self.num_classes = num_classes
        self.id2label = {int(k): v for k, v in id2label.items()} if id2label else None
        self.dropout = dropout or 0.0
        self.pooling = pooling or getattr(backbone, "classifier_pooling", "cls")
        if self.pooling not in ("cls", "mean"):
            raise ValueError(f"VideoClassifier: unknown pooling {self.pooling!r} (expected 'cls' or 'mean')")
        common = dict(dtype=backbone.dtype_policy)
        init = keras.initializers.TruncatedNormal(stddev=getattr(backbone, "initializer_range", 0.02))
        self.fc_norm = (keras.layers.LayerNormalization(epsilon=1e-5, name="fc_norm", **common)
                        if self.pooling == "mean" else None)
        self.drop = keras.layers.Dropout(self.dropout, **common)
        self.out = keras.layers.Dense(num_classes, kernel_initializer=init, name="classifier", **common)
        if preprocessor is not None and hasattr(preprocessor, "num_frames"):
            preprocessor.num_frames = backbone.num_frames

    def load_assets(self, dir_path):
        super().load_assets(dir_path)  # a .keras file's preprocessor
        if self.preprocessor is not None and hasattr(self.preprocessor, "num_frames"):
            self.preprocessor.num_frames = self.backbone.num_frames

    @classmethod
    def preprocessor_from_preset(cls, folder, hf, **kw):
        from keras_models.preprocessing.video import VideoProcessor

        return VideoProcessor.from_preset(folder) if VideoProcessor.config_path(folder) is not None else None

    # --- forward ------------------------------------------------------------------------------
    def pool(self, hidden):
        if self.pooling == "mean":
            return self.fc_norm(ops.mean(hidden, axis=1))
        return hidden[:, 0]

    def call(self, inputs, training=False):
        h = self.backbone(inputs, training=training)
        return self.out(self.drop(self.pool(h), training=training))

    def head_rules(self):
        r = norm_rules("fc_norm", self.fc_norm, base=False) if self.fc_norm is not None else []
        return r + dense_rules(self.hf_out, self.out, base=False)

    # --- inputs -------------------------------------------------------------------------------
    def _check_pixel_values(self, x):
        from keras_models.models.video.common import check_video_shape

        pixels = x.get("pixel_values") if isinstance(x, dict) else x
        if isinstance(pixels, np.ndarray):
            check_video_shape(pixels.shape, self.backbone)

    def _adapt(self, x, y, batch_size, shuffle, inference=False, sample_weight=None):
        if not _is_raw_videos(x):
            self._check_pixel_values(x)
            return None
        if self.preprocessor is None:
            raise InputError(f"{type(self).__name__}: raw videos need a preprocessor and this model has none "
                             "(no preprocessor_config.json in its preset); pass preprocessor= or normalised "
                             "float pixel_values (batch, frames, height, width, channels)")
        from keras_models.tasks.raw_data import RawDataAdapter

        videos = [x] if isinstance(x, np.ndarray) and x.ndim == 4 else list(x)  # one video
        return RawDataAdapter(videos, y, self.preprocessor, batch_size=batch_size or 8, shuffle=shuffle,
                              inference=inference, sample_weight=sample_weight).as_dataset()

    def get_config(self):
        c = super().get_config()
        c.update(pooling=self.pooling)
        return c


__all__ = ["VideoClassifier"]
