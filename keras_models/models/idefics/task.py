"""IDEFICS as km.ImageTextToText: logits over the text vocabulary plus the additional one, and
``generate`` with the image states computed once and cross-attended at every step.

Inputs: ``input_ids``, ``attention_mask``, ``pixel_values`` (batch, images, H, W, C) and
``image_attention_mask`` (batch, seq, images). While generating, each new token sees the images
the prompt's last token sees (Transformers repeats the mask's last row)."""

import keras
import numpy as np
from keras import ops

from keras_models.errors import InputError
from keras_models.generation.backend import project_onto_table
from keras_models.generation.decode import CausalDecoder
from keras_models.generation.mixin import GenerationMixin, backend_to_numpy
from keras_models.layers.decoder_masks import positions_from_mask
from keras_models.models.idefics.backbone import IdeficsBackbone
from keras_models.models.registry import register_task
from keras_models.presets.weight_map import TRANSPOSE, Rule
from keras_models.tasks.image_text_to_text import ImageTextToText

_ser = keras.saving.register_keras_serializable(package="keras_models")


class IdeficsDecoder(CausalDecoder):
    def forward(self, ids, cache, index, mask, extra, last_only=False):
        return self.model.call_with_cache(ids, cache, index, mask, last_only=last_only, extra=extra)


@_ser
@register_task(IdeficsBackbone, "ImageTextToText", ("IdeficsForVisionText2Text",))
class IdeficsImageTextToText(ImageTextToText):
    hf_lm_head = "lm_head"
    hf_lm_head_aliases = ()
    hf_head_patterns = ("lm_head.*",)
    decoder_adapter = IdeficsDecoder
    _gen_idefics = None

    def __init__(self, backbone, preprocessor=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        extra = backbone.spec.additional_vocab_size
        self.additional_head = None
        if extra and not self.tied:
            self.additional_head = keras.layers.Dense(extra, use_bias=False, name="additional_head",
                                                      dtype=backbone.dtype_policy)

    def build(self, input_shape=None):
        super().build(input_shape)
        if self.additional_head is not None:
            self.additional_head.build((None, None, self.backbone.hidden_size))

    def logits(self, hidden):
        bb = self.backbone
        if self.tied:
            out = project_onto_table(hidden, bb.language_model.token_embedding.embeddings)
            if bb.additional_embedding is not None:
                out = ops.concatenate([out, project_onto_table(hidden, bb.additional_embedding.embeddings)], axis=-1)
            return out
        out = self.lm_head(hidden)
        if self.additional_head is not None:
            out = ops.concatenate([out, self.additional_head(hidden)], axis=-1)
        return out

    # --- generation ----------------------------------------------------------------------------
    def call_with_cache(self, input_ids, cache, cache_index, attention_mask, last_only=False, extra=None):
        t = ops.shape(input_ids)[1]
        slots = ops.arange(t, dtype="int32") + ops.cast(cache_index, "int32")
        positions = ops.take(positions_from_mask(attention_mask), slots, axis=1)
        image_mask = ops.take(extra["image_mask"], slots, axis=1)
        hidden, cache = self.backbone._forward(input_ids, attention_mask, positions, extra["image_states"],
                                               image_mask, cache, cache_index)
        if last_only:
            hidden = hidden[:, -1:, :]
        return self.logits(hidden), cache

    def generate(self, inputs=None, generation_config=None, *, pixel_values=None, image_attention_mask=None,
                 **kwargs):
        """Transformers' ``generate``: ``inputs`` a dict with ``input_ids``, ``attention_mask``,
        ``pixel_values`` and ``image_attention_mask`` (or the last two given apart). Returns the
        prompt ids followed by the new ids."""
        if isinstance(inputs, dict):
            inputs = dict(inputs)
            pixel_values = inputs.pop("pixel_values", pixel_values)
            image_attention_mask = inputs.pop("image_attention_mask", image_attention_mask)
        if inputs is None and "input_ids" in kwargs:
            inputs = {k: kwargs.pop(k) for k in ("input_ids", "attention_mask") if k in kwargs}
        if pixel_values is None:
            raise InputError("generate: IDEFICS needs pixel_values (batch, images, height, width, channels)")
        ids = np.asarray(backend_to_numpy(inputs["input_ids"] if isinstance(inputs, dict) else inputs))
        ids = ids[None] if ids.ndim == 1 else ids
        pixels = np.asarray(backend_to_numpy(pixel_values))
        states = self.backbone.image_states(pixels)
        n = states.shape[1] // self.backbone.image_tokens
        if image_attention_mask is None:
            image_attention_mask = np.ones(ids.shape + (n,), "int32")
        image_mask = np.asarray(backend_to_numpy(image_attention_mask)).astype("int32")
        if image_mask.shape != ids.shape + (n,):
            raise InputError(f"generate: image_attention_mask must be (batch, seq, images) = {ids.shape + (n,)}, "
                             f"got {image_mask.shape}")
        if int(states.shape[0]) != ids.shape[0]:
            raise InputError(f"generate: pixel_values has {states.shape[0]} rows, input_ids {ids.shape[0]}")
        self._gen_idefics = (states, image_mask)
        try:
            return GenerationMixin.generate(self, inputs, generation_config, **kwargs)
        finally:
            self._gen_idefics = None
            self._gen_extra = None

    def _gen_buffers(self, ids, mask, rows_per_prompt, max_length, pad):
        tokens, full_mask = GenerationMixin._gen_buffers(self, ids, mask, rows_per_prompt, max_length, pad)
        if self._gen_idefics is not None:
            states, image_mask = self._gen_idefics
            if image_mask.shape[1] != ids.shape[1]:
                raise InputError(f"generate: image_attention_mask covers {image_mask.shape[1]} tokens, the prompt "
                                 f"has {ids.shape[1]}")
            tail = np.repeat(image_mask[:, -1:], max_length - image_mask.shape[1], axis=1)
            full = np.concatenate([image_mask, tail], axis=1)
            self._gen_extra = {"image_states": ops.repeat(states, rows_per_prompt, axis=0),
                               "image_mask": ops.convert_to_tensor(np.repeat(full, rows_per_prompt, axis=0))}
        return tokens, full_mask

    # --- HF conversion -------------------------------------------------------------------------
    def head_rules(self):
        r = super().head_rules()
        bb = self.backbone
        if self.tied and bb.additional_embedding is not None:
            r.append(Rule("lm_head.additional_fc.weight", bb.additional_embedding.embeddings, base=False,
                          optional=True, export=False))
        elif self.additional_head is not None:
            r.append(Rule("lm_head.additional_fc.weight", self.additional_head.kernel, TRANSPOSE, base=False))
        return r

    @classmethod
    def preprocessor_from_preset(cls, folder, hf, **kw):
        from keras_models.models.idefics.processor import IdeficsProcessor

        return IdeficsProcessor.from_preset(folder, hf)


__all__ = ["IdeficsImageTextToText"]
