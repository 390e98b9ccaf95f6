"""ERNIE-M (``model_type`` ernie_m, removed in Transformers 5): a multilingual post-norm BERT-like
encoder on the shared encoder. Differences from BERT: no token-type embedding, positions counted
from 2 (``arange + 2``, padding or not, as PaddleNLP does), and its own weight names
(``encoder.layers.N.self_attn.self_attn.q_proj``, ``linear1``/``linear2``, ``norm1``/``norm2``).
Heads: BERT's (pooler + ``classifier``, token ``classifier``, ``qa_outputs``); no MLM head exists.
The tokenizer (``ErnieMTokenizer``: SentencePiece + vocab.txt) is not provided here.
"""

from dataclasses import dataclass

import keras
from keras import ops

from keras_models.models.encoder.backbone import BERT_NAMES, EncoderBackbone, EncoderSpec
from keras_models.models.encoder.tasks import family_task
from keras_models.models.registry import register_backbone
from keras_models.spec import const, dim, hf
from keras_models.tasks.embedder import TextEmbedder
from keras_models.tasks.text import QuestionAnswerer, TextClassifier, TokenClassifier

POSITION_OFFSET = 2


@dataclass(frozen=True, kw_only=True)
class ErnieMSpec(EncoderSpec):
    """ErnieMConfig (Transformers 4.x) keys and defaults."""

    vocab_size: int = dim("vocab_size", 250002)
    max_position_embeddings: int = dim("max_position_embeddings", 514)
    pad_token_id: int = hf("pad_token_id", 1)
    layer_norm_eps: float = hf("layer_norm_eps", 1e-5)
    type_vocab_size: int = const(0)


ERNIE_M_NAMES = {
    **BERT_NAMES, "emb_norm": "embeddings.layer_norm", "layer": "encoder.layers.{i}.",
    "query": "self_attn.self_attn.q_proj", "key": "self_attn.self_attn.k_proj",
    "value": "self_attn.self_attn.v_proj", "attn_out": "self_attn.out_proj", "attn_norm": "norm1",
    "ffn_in": "linear1", "ffn_out": "linear2", "ffn_norm": "norm2",
}


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("ernie_m")
class ErnieMBackbone(EncoderBackbone):
    spec_cls = ErnieMSpec
    base_model_prefix = "ernie_m"
    hf_architecture = "ErnieMModel"
    hf_model_type = "ernie_m"
    hf_names = ERNIE_M_NAMES
    verified_backends = ("jax", "torch", "tensorflow")

    def position_ids(self, input_ids):
        seq_len = ops.shape(input_ids)[1]
        pos = ops.arange(seq_len, dtype="int32")[None, :] + POSITION_OFFSET
        return ops.broadcast_to(pos, ops.shape(input_ids))


@family_task(ErnieMBackbone, "TextClassifier", "ErnieMForSequenceClassification")
class ErnieMTextClassifier(TextClassifier):
    pass


@family_task(ErnieMBackbone, "TokenClassifier", "ErnieMForTokenClassification")
class ErnieMTokenClassifier(TokenClassifier):
    pass


@family_task(ErnieMBackbone, "QuestionAnswerer", "ErnieMForQuestionAnswering")
class ErnieMQuestionAnswerer(QuestionAnswerer):
    pass


@family_task(ErnieMBackbone, "TextEmbedder", "ErnieMModel")
class ErnieMTextEmbedder(TextEmbedder):
    pass


__all__ = ["ErnieMBackbone", "ErnieMTextClassifier", "ErnieMTokenClassifier", "ErnieMQuestionAnswerer",
           "ErnieMTextEmbedder"]
