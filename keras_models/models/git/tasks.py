"""GitForCausalLM as km.ImageToText: logits over [image tokens; text tokens] (Transformers' layout)
and ``generate`` with the image tokens' keys / values as a fixed prefix of the KV cache."""

import keras
import numpy as np
from keras import ops

from keras_models.errors import InputError
from keras_models.generation.decode import CausalDecoder
from keras_models.generation.mixin import GenerationMixin, backend_to_numpy
from keras_models.models.git.backbone import GitBackbone
from keras_models.models.registry import register_task
from keras_models.presets.weight_map import TRANSPOSE, Rule
from keras_models.tasks.image_to_text import ImageToText, ImageToTextProcessor, image_pixels
from keras_models.tasks.text import sparse_ce


class GitDecoder(CausalDecoder):
    """The engine's decoder interface: the image keys / values (``extra["image_kv"]``) are the
    KV buffers' prefix."""

    def forward(self, ids, cache, index, mask, extra, last_only=False):
        return self.model.call_with_cache(ids, cache, index, mask, last_only=last_only,
                                          image_kv=(extra or {}).get("image_kv"))


@keras.saving.register_keras_serializable(package="keras_models")
@register_task(GitBackbone, "ImageToText", ("GitForCausalLM",))
class GitImageToText(GenerationMixin, ImageToText):
    """Calling on ``{"input_ids", "attention_mask", "pixel_values"}`` returns the logits
    (batch, image tokens + text tokens, vocab); ``generate(inputs, pixel_values=...)`` returns the
    prompt ids followed by the new ids (the prompt defaults to ``bos_token_id``)."""

    hf_head_patterns = ("output.*",)
    decoder_adapter = GitDecoder

    def __init__(self, backbone, preprocessor=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        self.lm_head = keras.layers.Dense(
            backbone.vocab_size, name="output", dtype=backbone.dtype_policy,
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=backbone.spec.initializer_range))

    def build(self, input_shape=None):
        self.backbone.build_from_dummy()
        self.lm_head.build((None, None, self.backbone.hidden_size))
        self.built = True

    def build_from_dummy(self):
        if not self.built:
            self.build()
        return self

    def call(self, inputs, training=False):
        return self.lm_head(self.backbone(inputs, training=training))

    def default_loss(self):
        return sparse_ce(ignore_class=-100)

    # --- generation -----------------------------------------------------------------------------
    def init_cache(self, batch_size, max_length):
        return self.backbone.init_cache(batch_size, max_length)

    def call_with_cache(self, input_ids, cache, cache_index, attention_mask, last_only=False, image_kv=None):
        hidden, cache = self.backbone.call_with_cache(input_ids, cache, cache_index, attention_mask, image_kv)
        if last_only:
            hidden = hidden[:, -1:, :]
        return self.lm_head(hidden), cache

    def generate(self, inputs=None, generation_config=None, *, pixel_values=None, **kwargs):
        """Transformers' ``generate``: ``inputs`` a dict with ``input_ids`` (optional: the prompt
        defaults to ``bos_token_id``), ``attention_mask`` and ``pixel_values`` (or raw images
        through the image processor), or ``pixel_values=`` given apart."""
        if isinstance(inputs, dict) and "pixel_values" in inputs:
            inputs = dict(inputs)
            pixel_values = inputs.pop("pixel_values")
        if pixel_values is None:
            raise InputError("generate: GIT needs pixel_values (or images)")
        pixels = image_pixels(pixel_values, self.preprocessor)
        if not inputs:
            bos = self.backbone.bos_token_id
            inputs = {"input_ids": np.full((pixels.shape[0], 1), bos, "int32")}
        ids = np.asarray(backend_to_numpy(inputs["input_ids"] if isinstance(inputs, dict) else inputs))
        rows = 1 if ids.ndim == 1 else ids.shape[0]
        if rows != pixels.shape[0]:
            raise InputError(f"generate: {rows} prompt(s) for {pixels.shape[0]} image(s)")
        features = self.backbone.image_features(ops.convert_to_tensor(pixels))
        with self._gen_prompt_inputs(image_kv=self.backbone.image_kv(features)):
            return super().generate(inputs, generation_config, **kwargs)


    # --- HF conversion --------------------------------------------------------------------------
    def head_rules(self):
        return [Rule("output.weight", self.lm_head.kernel, TRANSPOSE, base=False),
                Rule("output.bias", self.lm_head.bias, base=False)]

    @classmethod
    def preprocessor_from_preset(cls, folder, hf, **_):
        return ImageToTextProcessor.from_preset(folder)

    def save_extra_files(self, folder):
        super().save_extra_files(folder)
        if self.preprocessor is not None and self.preprocessor.image_processor is not None:
            self.preprocessor.image_processor.save_pretrained(folder)


__all__ = ["GitImageToText", "GitDecoder"]
