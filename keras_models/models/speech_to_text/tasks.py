"""Speech2TextForConditionalGeneration: Seq2SeqLM over log-mel ``input_features`` with the LM
head tied to the decoder's token embeddings (``lm_head.weight``).

``generate(input_features, attention_mask=None, ...)`` encodes once and runs the shared generation
engine (greedy, sampling, beam search with the cross-attention cache) with the subsampled frame
mask on the cross-attention; it returns what Transformers' generate does: the decoder start token
(or ``decoder_input_ids``) followed by the new ids, right-padded with ``pad_token_id``.
"""

import keras
import numpy as np
from keras import ops

from keras_models.generation.config import GenerationError
from keras_models.generation.mixin import GenerationMixin
from keras_models.models.registry import register_task
from keras_models.models.speech_to_text.backbone import Speech2TextBackbone
from keras_models.tasks.seq2seq_lm import Seq2SeqLM
from keras_models.tasks.seq2seq_generation import forced_tokens_and_start

_ser = keras.saving.register_keras_serializable(package="keras_models")


@_ser
@register_task(Speech2TextBackbone, "Seq2SeqLM", ("Speech2TextForConditionalGeneration",))
class Speech2TextSeq2SeqLM(Seq2SeqLM):
    hf_final_logits_bias = None
    hf_head_patterns = ("lm_head.*",)

    def generate(self, input_features=None, generation_config=None, *, attention_mask=None,
                 decoder_input_ids=None, tokenizer=None, **kwargs):
        """Transcribe ``input_features`` (batch, frames, features) (or a dict holding them and
        ``attention_mask``) with Transformers' keyword names. Returns the ids (numpy)."""
        if input_features is None:
            input_features = kwargs.pop("input_features", None)
        if isinstance(input_features, dict):
            attention_mask = input_features.get("attention_mask", attention_mask)
            input_features = input_features.get("input_features")
        if input_features is None:
            raise GenerationError("generate: Speech2Text needs input_features (batch, frames, features)")
        feats = np.asarray(ops.convert_to_numpy(input_features), "float32")
        if feats.ndim == 2:
            feats = feats[None]
        return speech_generate(self, feats, attention_mask, generation_config, decoder_input_ids, tokenizer,
                               kwargs)


def generate_from_waveforms(task, what, input_values, generation_config, attention_mask, decoder_input_ids,
                            tokenizer, kwargs, encode=None):
    """``generate`` of a model over raw audio ``input_values`` (batch, samples) -- or a dict holding
    them and ``attention_mask`` -- with Transformers' keyword names (``input_values`` / ``inputs``);
    ``what`` names the model in errors."""
    if input_values is None:
        input_values = kwargs.pop("input_values", kwargs.pop("inputs", None))
    if isinstance(input_values, dict):
        attention_mask = input_values.get("attention_mask", attention_mask)
        input_values = input_values.get("input_values")
    if input_values is None:
        raise GenerationError(f"generate: {what} needs input_values (batch, samples)")
    values = np.asarray(ops.convert_to_numpy(input_values), "float32")
    if values.ndim == 1:
        values = values[None]
    return speech_generate(task, values, attention_mask, generation_config, decoder_input_ids, tokenizer, kwargs,
                           encode=encode)


def speech_generate(model, inputs, attention_mask, generation_config, decoder_input_ids, tokenizer, kwargs,
                    encode=None):
    """Encode ``inputs`` (batch, time, ...) once (``model.backbone.encode(inputs, attention_mask)``,
    or ``encode(inputs, attention_mask)``: e.g. a compiled encoder) and run the shared generation
    engine with the backbone's ``encoder_mask`` on the cross-attention, from the decoder start token
    (or ``decoder_input_ids``)."""
    batch = inputs.shape[0]
    if attention_mask is None:
        attention_mask = np.ones(inputs.shape[:2], "int32")
    attention_mask = np.asarray(ops.convert_to_numpy(attention_mask)).astype("int32").reshape(batch, -1)
    if attention_mask.shape[1] != inputs.shape[1]:
        raise GenerationError(f"generate: attention_mask has {attention_mask.shape[1]} steps, the inputs "
                              f"{inputs.shape[1]}")
    start = forced_tokens_and_start(model, generation_config, kwargs)
    if decoder_input_ids is None:
        if start is None:
            raise GenerationError("generate: no decoder_start_token_id in the config; pass one")
        decoder_input_ids = np.full((batch, 1), start, "int32")
    prompt = np.asarray(ops.convert_to_numpy(decoder_input_ids)).astype("int32")
    prompt = np.repeat(prompt[None], batch, axis=0) if prompt.ndim == 1 else prompt
    b = model.backbone
    states = (encode or b.encode)(inputs, attention_mask)
    mask = b.encoder_mask(attention_mask, ops.shape(states)[1])
    model._gen_encoder = (states, ops.cast(mask, "int32"), np.zeros((batch, 1), "int32"))
    try:
        return GenerationMixin.generate(model, {"input_ids": prompt}, generation_config, tokenizer=tokenizer,
                                        **kwargs)
    finally:
        model._gen_encoder = None


__all__ = ["Speech2TextSeq2SeqLM", "speech_generate"]
