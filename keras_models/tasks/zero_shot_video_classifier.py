"""ZeroShotVideoClassifier: score videos against free-text labels (X-CLIP).

Calling the model on ``{"input_ids", "attention_mask", "pixel_values"}`` (``pixel_values``
(batch, frames, height, width, channels), channels_last) returns, as Transformers' ``XCLIPModel``
does, ``{"logits_per_video": (videos, texts), "logits_per_text": (texts, videos), "video_embeds"
(videos, dim), "text_embeds" (videos, texts, dim)}`` (unit-normalised; the text embeddings are
conditioned on each video, hence one set per video). The learned temperature ``logit_scale`` is
this task's head; everything else is the backbone (``backbone(inputs)`` gives the unnormalised
``{"video_embeds", "text_embeds"}``).
"""

import keras
from keras import ops

from keras_models.presets.weight_map import Rule
from keras_models.tasks.task import Task


def _unit(x):
    return x / ops.sqrt(ops.sum(ops.square(x), axis=-1, keepdims=True))


@keras.saving.register_keras_serializable(package="keras_models")
class ZeroShotVideoClassifier(Task):
    task_name = "ZeroShotVideoClassifier"
    hf_head_patterns = ("logit_scale",)

    def __init__(self, backbone, preprocessor=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        init = keras.initializers.Constant(backbone.spec.logit_scale_init_value)
        self.logit_scale = self.add_weight(name="logit_scale", shape=(), initializer=init)

    def call(self, inputs, training=False):
        out = self.backbone(inputs, training=training)
        video, text = _unit(out["video_embeds"]), _unit(out["text_embeds"])
        scale = ops.exp(ops.cast(self.logit_scale, video.dtype))
        logits_per_video = ops.einsum("bd,bkd->bk", video, text) * scale
        return {"logits_per_video": logits_per_video, "logits_per_text": ops.transpose(logits_per_video),
                "video_embeds": video, "text_embeds": text}

    def head_rules(self):
        return [Rule("logit_scale", self.logit_scale, base=False)]


__all__ = ["ZeroShotVideoClassifier"]
