"""ImageTextToText: a vision-language model (LLaVA, VipLlava) generating text from images and text.

Calling the model on ``{"input_ids", "attention_mask", "pixel_values"}`` (``input_ids`` already
holding the processor's image tokens, ``pixel_values`` channels_last) returns the logits
(batch, seq, vocab), as Transformers' ``LlavaForConditionalGeneration``. The backbone computes the
image features once (vision tower + projector) and puts them at the image-token positions of the
token embeddings, in row-major order over the batch; the language model runs on the result.

``generate`` is the shared engine's (keras_models/generation/): the image features are computed
once, before the loop, and reach the compiled loop as its ``extra`` input; the prefill writes the
merged prompt (image tokens included) into the language model's KV cache and every later step
feeds plain token embeddings, as Transformers does.

The backbone provides ``language_model`` (a decoder backbone with ``call_with_cache(...,
embed=)``), ``image_features(pixel_values)``, ``merge_embeddings(ids, table, features, active)``,
``image_token_index`` and ``tokens_per_image``.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_models.generation.backend import project_onto_table
from keras_models.generation.decode import CausalDecoder
from keras_models.generation.mixin import GenerationMixin, backend_to_numpy
from keras_models.presets.weight_map import TRANSPOSE, Rule
from keras_models.tasks.task import Task
from keras_models.tasks.text import sparse_ce


class ImageTextDecoder(CausalDecoder):
    """The engine's decoder interface: image features (``extra["image_features"]``) merged on the
    prefill only (cache index 0)."""

    def forward(self, ids, cache, index, mask, extra, last_only=False):
        return self.model.call_with_cache(ids, cache, index, mask, last_only=last_only,
                                          image_features=(extra or {}).get("image_features"))


@keras.saving.register_keras_serializable(package="keras_models")
class ImageTextToText(GenerationMixin, Task):
    task_name = "ImageTextToText"
    hf_lm_head = "language_model.lm_head"  # as Transformers 5 saves it
    hf_lm_head_aliases = ("lm_head",)  # its in-memory name
    hf_head_patterns = ("lm_head.*", "language_model.lm_head.*")
    decoder_adapter = ImageTextDecoder
    _gen_images = None

    def __init__(self, backbone, preprocessor=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        text = backbone.language_model
        o = text.options
        self.tied = bool(backbone.tie_word_embeddings)
        self.final_logit_softcap = o["final_logit_softcap"]
        self.lm_head = None
        if not self.tied:
            self.lm_head = keras.layers.Dense(
                text.vocab_size, use_bias=bool(o["lm_head_bias"]), name="lm_head", dtype=backbone.dtype_policy,
                kernel_initializer=keras.initializers.TruncatedNormal(stddev=o["initializer_range"]))

    def build(self, input_shape=None):
        self.backbone.build_from_dummy()
        if self.lm_head is not None:
            text = self.backbone.language_model
            self.lm_head.build((None, None, text.options["embed_proj_dim"] or text.hidden_size))
        self.built = True

    def build_from_dummy(self):
        if not self.built:
            self.build()
        return self

    # --- forward ------------------------------------------------------------------------------
    def logits(self, hidden):
        text = self.backbone.language_model
        out = project_onto_table(hidden, text.token_embedding.embeddings) if self.tied else self.lm_head(hidden)
        scale = text.options.get("logit_scale")
        if scale is not None:
            out = out * ops.cast(scale, out.dtype)
        if self.final_logit_softcap is not None:
            out = ops.tanh(out / self.final_logit_softcap) * self.final_logit_softcap
        return out

    def call(self, inputs, training=False):
        return self.logits(self.backbone(inputs, training=training))

    def default_loss(self):
        """Next-token cross-entropy; labels of -100 (prompt and image tokens, padding) are ignored."""
        return sparse_ce(ignore_class=-100)

    def predict(self, x, batch_size=None, **kwargs):
        if isinstance(x, dict):
            self.backbone.check_image_inputs(x, "predict")
        return super().predict(x, batch_size=batch_size, **kwargs)

    # --- generation interface ----------------------------------------------------------------
    def init_cache(self, batch_size, max_length):
        return self.backbone.language_model.init_cache(batch_size, max_length)

    def call_with_cache(self, input_ids, cache, cache_index, attention_mask, last_only=False, image_features=None):
        embed = None
        if image_features is not None:
            first = ops.equal(ops.cast(cache_index, "int32"), 0) if not isinstance(cache_index, int) else cache_index == 0

            def embed(ids, table):
                return self.backbone.merge_embeddings(ids, table, image_features, first)

        hidden, cache = self.backbone.language_model.call_with_cache(input_ids, cache, cache_index, attention_mask,
                                                                     embed=embed)
        if last_only:
            hidden = hidden[:, -1:, :]
        return self.logits(hidden), cache

    def generate(self, inputs=None, generation_config=None, *, pixel_values=None, **kwargs):
        """Transformers' ``generate``: ``inputs`` a dict with ``input_ids`` (holding the image
        tokens), ``attention_mask`` and ``pixel_values`` (or ``pixel_values=`` given apart).
        Returns the prompt ids followed by the new ids."""
        if isinstance(inputs, dict) and "pixel_values" in inputs:
            inputs = dict(inputs)
            pixel_values = inputs.pop("pixel_values")
        if inputs is None and "input_ids" in kwargs:
            inputs = {k: kwargs.pop(k) for k in ("input_ids", "attention_mask") if k in kwargs}
        if pixel_values is None:
            return super().generate(inputs, generation_config, **kwargs)
        ids = np.asarray(backend_to_numpy(inputs["input_ids"] if isinstance(inputs, dict) else inputs))
        ids = ids[None] if ids.ndim == 1 else ids
        mask = inputs.get("attention_mask") if isinstance(inputs, dict) else None
        mask = np.ones_like(ids) if mask is None else np.asarray(backend_to_numpy(mask)).reshape(ids.shape)
        self.backbone.check_image_inputs({"input_ids": ids, "attention_mask": mask, "pixel_values": pixel_values},
                                         "generate")
        features = self.backbone.image_features(ops.convert_to_tensor(np.asarray(backend_to_numpy(pixel_values))))
        self._gen_images = ops.reshape(features, (-1, int(features.shape[-1])))
        try:
            return super().generate(inputs, generation_config, **kwargs)
        finally:
            self._gen_images = None
            self._gen_extra = None

    # The engine's hooks: the image features follow the rows the engine runs (a prompt's rows
    # repeated for beams / returned sequences) and enter the compiled loop as its ``extra``.
    def _gen_buffers(self, ids, mask, rows_per_prompt, max_length, pad):
        self._gen_extra = {}
        if self._gen_images is not None:
            counts = ((ids == self.backbone.image_token_index) & (mask != 0)).sum(axis=1)
            starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
            order = np.concatenate([np.tile(np.arange(s, s + c), rows_per_prompt) for s, c in zip(starts, counts)]
                                   + [np.zeros((0,), "int64")]).astype("int32")
            self._gen_extra = {"image_features": ops.take(self._gen_images, order, axis=0)}
        return super()._gen_buffers(ids, mask, rows_per_prompt, max_length, pad)


    # --- HF conversion -----------------------------------------------------------------------
    def head_rules(self):
        name, old = self.hf_lm_head, self.hf_lm_head_aliases
        if self.tied:
            return [Rule(f"{name}.weight", self.backbone.language_model.token_embedding.embeddings, base=False,
                         optional=True, export=False, aliases=tuple(f"{a}.weight" for a in old))]
        r = [Rule(f"{name}.weight", self.lm_head.kernel, TRANSPOSE, base=False,
                  aliases=tuple(f"{a}.weight" for a in old))]
        if self.lm_head.use_bias:
            r.append(Rule(f"{name}.bias", self.lm_head.bias, base=False, aliases=tuple(f"{a}.bias" for a in old)))
        return r

    @classmethod
    def preprocessor_from_preset(cls, folder, hf, **kw):
        from keras_models.preprocessing.image_text import ImageTextProcessor

        return ImageTextProcessor.from_preset(folder, hf)

    def save_extra_files(self, folder):
        super().save_extra_files(folder)  # the tokenizer, generation_config.json
        if self.preprocessor is not None and hasattr(self.preprocessor, "save_pretrained"):
            self.preprocessor.save_pretrained(folder)


__all__ = ["ImageTextToText", "ImageTextDecoder"]
