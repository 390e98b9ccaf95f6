"""ZeroShotImageClassifier: score images against free-text labels with a dual encoder.

Calling the model on ``{"input_ids", "attention_mask", "pixel_values"}`` returns, as Transformers'
``CLIPModel`` does, ``{"logits_per_image": (images, texts), "logits_per_text": (texts, images),
"image_embeds", "text_embeds"}`` (unit-normalised projected features). ``encode_image`` /
``encode_text`` give the projected features before normalisation (``get_image_features`` /
``get_text_features``). The learned temperature (``logit_scale``, and SigLIP's ``logit_bias``)
is this task's head; the towers and projections are the backbone.
"""

import keras
from keras import ops

from keras_models.presets.weight_map import Rule
from keras_models.tasks.task import Task


def _unit(x):
    return x / ops.sqrt(ops.sum(ops.square(x), axis=-1, keepdims=True))


@keras.saving.register_keras_serializable(package="keras_models")
class ZeroShotImageClassifier(Task):
    task_name = "ZeroShotImageClassifier"
    hf_head_patterns = ("logit_scale", "logit_bias")
    # family attributes: the checkpoint's shape of the temperature, and whether a bias is learned
    logit_shape = ()
    use_logit_bias = False
    # how pipeline("zero-shot-image-classification") turns logits into scores, and pads texts
    score_activation = "softmax"
    text_padding = "longest"

    def __init__(self, backbone, preprocessor=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        init = keras.initializers.Constant(backbone.spec.logit_scale_init_value)
        self.logit_scale = self.add_weight(name="logit_scale", shape=self.logit_shape, initializer=init)
        self.logit_bias = (self.add_weight(name="logit_bias", shape=self.logit_shape, initializer="zeros")
                           if self.use_logit_bias else None)

    def encode_text(self, inputs):
        return self.backbone.encode_text(inputs)

    def encode_image(self, inputs):
        return self.backbone.encode_image(inputs)

    def call(self, inputs, training=False):
        text = _unit(self.backbone.encode_text(inputs, training=training))
        image = _unit(self.backbone.encode_image(inputs, training=training))
        scale = ops.exp(ops.reshape(ops.cast(self.logit_scale, text.dtype), ()))
        logits_per_text = ops.matmul(text, ops.transpose(image)) * scale
        if self.logit_bias is not None:
            logits_per_text = logits_per_text + ops.reshape(ops.cast(self.logit_bias, text.dtype), ())
        return {"logits_per_image": ops.transpose(logits_per_text), "logits_per_text": logits_per_text,
                "image_embeds": image, "text_embeds": text}

    def head_rules(self):
        r = [Rule("logit_scale", self.logit_scale, base=False)]
        if self.logit_bias is not None:
            r.append(Rule("logit_bias", self.logit_bias, base=False))
        return r

    @classmethod
    def preprocessor_from_preset(cls, folder, hf, **kw):
        from keras_models.preprocessing.dual import DualEncoderProcessor

        return DualEncoderProcessor.from_preset(folder, text_padding=cls.text_padding)

    def save_extra_files(self, folder):
        if self.preprocessor is not None:
            self.preprocessor.save_pretrained(folder)


__all__ = ["ZeroShotImageClassifier"]
