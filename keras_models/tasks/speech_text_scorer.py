"""SpeechTextScorer: generate speech-token candidates for a text in a reference voice, and score
speech against text (CLVP, Tortoise TTS's candidate generator and ranker).

    model = km.SpeechTextScorer.from_preset("susnato/clvp_dev")
    out = model({"input_ids", "attention_mask", "input_features"})
    # {"logits_per_text": (texts, speech), "logits_per_speech", "text_embeds", "speech_embeds"}
    gen = model.generate({"input_ids", "attention_mask", "input_features"}, max_new_tokens=64)
    # {"speech_ids": (batch, new tokens), "logits_per_text", "logits_per_speech", ...}

Calling the model is Transformers' ``ClvpModelForConditionalGeneration.forward``: the speech
decoder reads the conditioning prefix (the voice vector of ``input_features`` and the text), its
argmax tokens are fixed up (``fix_speech_decoder_output``) and embedded by the speech encoder, the
text by the text encoder; both embeddings are unit-normalised and ``logits_per_text = text @
speech.T * exp(logit_scale)``. ``input_features`` are (batch, frames, feature_size), channels
last (Transformers' are (batch, feature_size, frames)); ``ClvpFeatureExtractor`` gives them.

``generate`` is Transformers' ``ClvpModelForConditionalGeneration.generate`` (greedy): the text
gets its end token, the decoder continues the prefix token by token over a fixed-size KV cache,
and the fixed-up speech ids are scored against the text. Like Transformers, the decoding stops on
generation_config.json's ``eos_token_id`` (without that file: the text config's, which is what
Transformers derives) and pads finished rows with ``pad_token_id`` (default: that eos); and, like
Transformers 5, the prefix gets the first position's embedding added to every slot and the i-th
generated token (i >= 1) the embedding of position i + 1.
"""

import json
import weakref

import keras
import numpy as np
from keras import ops

from keras_models.errors import InputError
from keras_models.generation.backend import BACKEND, compile_fn, no_grad
from keras_models.presets.weight_map import Rule
from keras_models.tasks.task import Task

_COMPILED = weakref.WeakKeyDictionary()  # model -> {cache room: (front, step, score)}
GENERATION_KEYS = ("max_new_tokens", "max_length", "eos_token_id", "pad_token_id", "do_sample", "num_beams")


def _unit(x):
    return x / ops.sqrt(ops.sum(ops.square(x), axis=-1, keepdims=True))


@keras.saving.register_keras_serializable(package="keras_models")
class SpeechTextScorer(Task):
    task_name = "SpeechTextScorer"
    hf_head_patterns = ("logit_scale",)

    def __init__(self, backbone, preprocessor=None, generation_config=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        self.generation_config = dict(generation_config or {})
        init = keras.initializers.Constant(backbone.spec.logit_scale_init_value)
        self.logit_scale = self.add_weight(name="logit_scale", shape=(), initializer=init)

    def head_rules(self):
        return [Rule("logit_scale", self.logit_scale, base=False)]

    # --- scoring --------------------------------------------------------------------------------
    def scores(self, text_embeds, speech_embeds):
        text, speech = _unit(text_embeds), _unit(speech_embeds)
        logits = ops.matmul(text, ops.transpose(speech)) * ops.exp(ops.cast(self.logit_scale, text.dtype))
        return {"logits_per_text": logits, "logits_per_speech": ops.transpose(logits), "text_embeds": text,
                "speech_embeds": speech}

    def call(self, inputs, training=False):
        from keras_models.models.clvp.backbone import fix_speech_ids

        self._check(inputs)
        d = self.backbone.spec.decoder_config
        logits = self.backbone(inputs, training=training)
        speech_ids = fix_speech_ids(ops.argmax(logits, axis=-1), d.eos_token_id, d.decoder_fixing_codes)
        return self.scores(self.backbone.encode_text(inputs, training), self.backbone.encode_speech(speech_ids))

    @staticmethod
    def _check(inputs):
        if not isinstance(inputs, dict) or "input_ids" not in inputs or "input_features" not in inputs:
            got = sorted(inputs) if isinstance(inputs, dict) else type(inputs).__name__
            raise InputError(f"SpeechTextScorer takes a dict with 'input_ids' (and 'attention_mask') and "
                             f"'input_features', got {got}")

    # --- generation -----------------------------------------------------------------------------
    def generate(self, inputs, max_new_tokens=None, eos_token_id=None, pad_token_id=None, pad_to_max_mel_tokens=None,
                 do_sample=None, num_beams=None):
        """Greedy speech-token candidates for ``inputs`` ({"input_ids", "attention_mask",
        "input_features"}), scored against the text. Returns numpy arrays: ``{"speech_ids"
        (batch, tokens, fixed up as Transformers does), "logits_per_text", "logits_per_speech",
        "text_embeds", "speech_embeds"}``."""
        from keras_models.models.clvp.backbone import pad_bos_eos

        self._check(inputs)
        g = self.generation_config
        sample = g.get("do_sample", False) if do_sample is None else do_sample
        beams = g.get("num_beams", 1) if num_beams is None else num_beams
        if sample or (beams or 1) > 1:
            raise InputError("SpeechTextScorer.generate: only greedy decoding is implemented (do_sample=False, "
                             "num_beams=1)")
        spec = self.backbone.spec
        t, d = spec.text_config, spec.decoder_config
        max_new = max_new_tokens if max_new_tokens is not None else g.get("max_new_tokens", 20)
        if isinstance(max_new, bool) or not isinstance(max_new, int) or max_new < 1:
            raise InputError(f"generate: max_new_tokens must be a positive integer, got {max_new!r}")
        if max_new + 1 > d.max_position_embeddings:
            raise InputError(f"generate: max_new_tokens={max_new} needs positions up to {max_new + 1}, beyond the "
                             f"decoder's max_position_embeddings ({d.max_position_embeddings})")
        eos = eos_token_id if eos_token_id is not None else g.get("eos_token_id", t.eos_token_id)
        stops = [] if eos is None else [int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])]
        pad = pad_token_id if pad_token_id is not None else g.get("pad_token_id")
        pad = pad if pad is not None else (stops[0] if stops else 0)
        ids = np.asarray(ops.convert_to_numpy(inputs["input_ids"])).astype("int32")
        mask = inputs.get("attention_mask")
        mask = np.ones_like(ids) if mask is None else np.asarray(ops.convert_to_numpy(mask)).astype("int32")
        if ids.ndim != 2 or mask.shape != ids.shape:
            raise InputError(f"generate: input_ids must be (batch, length) with an attention_mask of the same "
                             f"shape, got {ids.shape} and {mask.shape}")
        if ids.shape[1] > d.max_text_tokens - 3:
            raise InputError(f"generate: input_ids has {ids.shape[1]} tokens; at most decoder_config.max_text_tokens "
                             f"- 3 = {d.max_text_tokens - 3} fit (3 start / end tokens are added)")
        feats = np.asarray(ops.convert_to_numpy(inputs["input_features"])).astype("float32")
        b = max(ids.shape[0], feats.shape[0])
        eager = BACKEND == "torch"
        with no_grad():
            # the KV cache's room for new tokens: exact for torch's eager loop, else a multiple of 16 so
            # that calls with nearby max_new_tokens share one compiled prefix / step
            front, step, score = self._compiled(max_new if eager else -(-max_new // 16) * 16)
            ids_e, mask_e = pad_bos_eos(ids, mask, t.bos_token_id, t.eos_token_id, add_bos=False)
            ids_e, mask_e = (np.asarray(ops.convert_to_numpy(a)).astype("int32") for a in (ids_e, mask_e))
            nxt, cache = front(ids_e, mask_e, feats)
            length = ids_e.shape[1] + 3  # the voice vector, the text's start and end, the speech start
            tokens = [np.full((b,), d.bos_token_id, "int32")]
            alive = np.ones((b,), bool)
            for k in range(1, max_new + 1):
                nxt = np.where(alive, np.asarray(ops.convert_to_numpy(nxt)), pad).astype("int32")
                tokens.append(nxt)
                alive &= ~np.isin(nxt, stops)
                if k == max_new or not alive.any():
                    break
                index = length + k - 1
                nxt, cache = step(nxt[:, None], np.array(k + 1, "int32"), cache,
                                  index if eager else np.array(index, "int32"))
            seq = np.stack(tokens, axis=1)
            if pad_to_max_mel_tokens is not None and pad_to_max_mel_tokens > seq.shape[1]:
                # Transformers pads with the model's own generation-config eos, not a call's override
                default_eos = g.get("eos_token_id", t.eos_token_id)
                default_eos = default_eos[0] if isinstance(default_eos, (list, tuple)) else default_eos
                fill = np.full((b, pad_to_max_mel_tokens - seq.shape[1]), default_eos, "int32")
                seq = np.concatenate([seq, fill], axis=1)
            out = score(ids_e, mask_e, seq)
        return {k: np.asarray(ops.convert_to_numpy(v)) for k, v in out.items()}

    def _compiled(self, room):
        """(front, step, score), compiled for this backend once per cache ``room`` (jax / tensorflow
        retrace per input shape): ``front`` builds the decoder prefix and its KV cache and gives the
        first token; ``step`` feeds one token at a position and cache slot; ``score`` fixes up the
        speech ids and scores them against the text."""
        from keras_models.models.clvp.backbone import fix_speech_ids

        table = _COMPILED.setdefault(self, {})
        if room in table:
            return table[room]
        bb, d = self.backbone, self.backbone.spec.decoder_config
        pos = bb.position_embedding

        def front(ids, mask, feats):
            cond = bb.conditioning({"input_ids": ids, "attention_mask": mask, "input_features": feats})
            b = cond.shape[0] or ops.shape(cond)[0]
            first = pos(ops.zeros((1, 1), "int32"))
            start = bb.token_embedding(ops.full((b, 1), d.bos_token_id, "int32")) + first
            prefix = ops.concatenate([cond, start], axis=1)
            length = prefix.shape[1]
            # Transformers 5 subtracts the positions 0..L-1 from the prefix; its decoder then adds position 0
            prefix = prefix - pos(ops.arange(length, dtype="int32"))[None] + first
            logits, cache = bb.decoder_hidden(prefix, bb.init_cache(b, length + room), 0)
            return ops.cast(ops.argmax(logits[:, -1], axis=-1), "int32"), cache

        def step(token, position, cache, index):
            x = bb.token_embedding(token) + pos(ops.reshape(position, (1, 1)))
            logits, cache = bb.decoder_hidden(x, cache, index)
            return ops.cast(ops.argmax(logits[:, -1], axis=-1), "int32"), cache

        def score(ids, mask, seq):
            speech_ids = fix_speech_ids(seq, d.eos_token_id, d.decoder_fixing_codes)
            text = bb.encode_text({"input_ids": ids, "attention_mask": mask})
            return {**self.scores(text, bb.encode_speech(speech_ids)), "speech_ids": speech_ids}

        table[room] = tuple(compile_fn(self, f) for f in (front, step, score))
        return table[room]

    # --- presets --------------------------------------------------------------------------------
    @classmethod
    def from_preset(cls, preset, *args, **kwargs):
        model = super().from_preset(preset, *args, **kwargs)
        from keras_models.presets.config import read_json
        from keras_models.presets.resolve import resolve_preset

        gen = read_json(resolve_preset(preset) / "generation_config.json", required=False)
        if gen is not None:
            model.generation_config = {k: gen[k] for k in GENERATION_KEYS if k in gen}
        return model

    def save_extra_files(self, folder):
        super().save_extra_files(folder)
        if self.generation_config:
            (folder / "generation_config.json").write_text(json.dumps(self.generation_config, indent=2))

    def get_config(self):
        config = super().get_config()
        config["generation_config"] = self.generation_config
        return config


__all__ = ["SpeechTextScorer"]
