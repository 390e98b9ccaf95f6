"""EncoderDecoderModel's task: Seq2SeqLM with the decoder's BERT-shaped LM head (dense ->
activation -> LayerNorm -> the token table, tied unless the decoder config says otherwise, + bias);
``generate(input_ids, attention_mask=...)`` as Transformers' generate."""

import keras

from keras_models.models.registry import register_task
from keras_models.models.text_encoder_decoder.backbone import EncoderDecoderModelBackbone
from keras_models.presets.weight_map import TRANSPOSE, Rule
from keras_models.tasks.heads import MaskedLMHead
from keras_models.tasks.seq2seq_lm import Seq2SeqLM


@keras.saving.register_keras_serializable(package="keras_models")
@register_task(EncoderDecoderModelBackbone, "Seq2SeqLM", ("EncoderDecoderModel",))
class EncoderDecoderSeq2SeqLM(Seq2SeqLM):
    hf_final_logits_bias = None
    hf_head_patterns = ("decoder.cls.*", "decoder.lm_head.*")

    def __init__(self, backbone, preprocessor=None, tie_word_embeddings=True, **kwargs):
        kwargs.update(final_logits_bias=False, scale_decoder_outputs=False)
        # the Seq2SeqLM linear head is never built: ours is the MLM-shaped one below
        super().__init__(backbone, preprocessor=preprocessor, tie_word_embeddings=True, **kwargs)
        self.tie_word_embeddings = tie_word_embeddings
        b = backbone
        self.mlm_head = MaskedLMHead(
            b.hidden_size, b.vocab_size, hidden_act=b.head_activation, layer_norm_eps=b.layer_norm_eps,
            tied=tie_word_embeddings, name="mlm_head", dtype=b.dtype_policy,
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=b.initializer_range))
        self.mlm_head.build((None, None, b.hidden_size))

    def project(self, hidden):
        return self.mlm_head(hidden, self.backbone.decoder.token_embedding.embeddings)

    @classmethod
    def task_config_from_hf(cls, hf, head_from_checkpoint, **kwargs):
        kwargs.setdefault("tie_word_embeddings", cls.backbone_cls.tied_head(hf))
        return kwargs

    def task_config_to_hf(self):
        return {}  # the head's tying lives in the decoder's own config

    def head_rules(self):
        h, p = self.mlm_head, self.backbone.hf_head_prefix
        dense = "transform.dense" if p.endswith("cls.predictions") else "dense"
        norm = "transform.LayerNorm" if p.endswith("cls.predictions") else "layer_norm"
        r = [Rule(f"{p}.{dense}.weight", h.dense.kernel, TRANSPOSE, base=False),
             Rule(f"{p}.{dense}.bias", h.dense.bias, base=False),
             Rule(f"{p}.{norm}.weight", h.norm.gamma, base=False),
             Rule(f"{p}.{norm}.bias", h.norm.beta, base=False),
             Rule(f"{p}.bias", h.bias, base=False),
             Rule(f"{p}.decoder.bias", h.bias, base=False, optional=True, export=not self.tie_word_embeddings)]
        if self.tie_word_embeddings:
            r.append(Rule(f"{p}.decoder.weight", self.backbone.decoder.token_embedding.embeddings, base=False,
                          optional=True, export=False))
        else:
            r.append(Rule(f"{p}.decoder.weight", h.decoder, base=False))
        return r

    def get_config(self):
        c = super().get_config()
        c["tie_word_embeddings"] = self.tie_word_embeddings
        for key in ("final_logits_bias", "scale_decoder_outputs"):
            c.pop(key, None)
        return c


__all__ = ["EncoderDecoderSeq2SeqLM"]
