"""MEGA's tasks: the MLM head (optional ``dense`` + tanh, then ``mlm_head``, tied to the word
embeddings unless ``tie_word_embeddings`` is false), RoBERTa's ``classifier.dense`` (tanh) ->
``classifier.out_proj`` on the first token, token classification and extractive QA."""

import keras

from keras_models.layers.vision_embeddings import dense_rules
from keras_models.models.encoder.tasks import ClassifierDenseOutProj, family_task
from keras_models.models.mega.backbone import MegaBackbone
from keras_models.presets.weight_map import TRANSPOSE, Rule
from keras_models.tasks.embedder import TextEmbedder
from keras_models.tasks.text import MaskedLM, QuestionAnswerer, TokenClassifier


@family_task(MegaBackbone, "MaskedLM", "MegaForMaskedLM")
class MegaMaskedLM(MaskedLM):
    """Logits (batch, seq, vocab): ``mlm_head(tanh(dense(h)))`` (the dense only with
    ``add_lm_hidden_dense_layer``); the head's weight is the word table when tied."""

    hf_head_patterns = ("dense.*", "mlm_head.*")

    def __init__(self, backbone, preprocessor=None, tie_word_embeddings=True, **kwargs):
        super(MaskedLM, self).__init__(backbone, preprocessor=preprocessor, **kwargs)
        self.tie_word_embeddings = tie_word_embeddings
        b, d = backbone, backbone.dtype_policy
        init = keras.initializers.RandomNormal(stddev=b.initializer_range)
        self.dense = None
        if b.spec.add_lm_hidden_dense_layer:
            self.dense = keras.layers.Dense(b.hidden_size, activation="tanh", kernel_initializer=init,
                                            name="dense", dtype=d)
        self.decoder = None if tie_word_embeddings else keras.layers.Dense(
            b.vocab_size, use_bias=False, kernel_initializer=init, name="mlm_head", dtype=d)

    def build(self, input_shape=None):
        self.backbone.build_from_dummy()
        h = self.backbone.hidden_size
        if self.dense is not None:
            self.dense.build((None, None, h))
        if self.decoder is not None:
            self.decoder.build((None, None, h))
        self.bias = self.add_weight(name="mlm_bias", shape=(self.backbone.vocab_size,), initializer="zeros")
        self.built = True

    def call(self, inputs, training=False):
        h = self.backbone(inputs, training=training)
        if self.dense is not None:
            h = self.dense(h)
        if self.decoder is None:
            logits = keras.ops.matmul(h, keras.ops.transpose(self.backbone.token_embedding.embeddings))
        else:
            logits = self.decoder(h)
        return logits + self.bias

    def head_rules(self):
        r = dense_rules("dense", self.dense, base=False) if self.dense is not None else []
        r.append(Rule("mlm_head.bias", self.bias, base=False))
        if self.decoder is None:
            r.append(Rule("mlm_head.weight", self.backbone.token_embedding.embeddings, base=False, optional=True,
                          export=False))
        else:
            r.append(Rule("mlm_head.weight", self.decoder.kernel, TRANSPOSE, base=False))
        return r


@family_task(MegaBackbone, "TextClassifier", "MegaForSequenceClassification")
class MegaTextClassifier(ClassifierDenseOutProj):
    inner_activation = "tanh"


@family_task(MegaBackbone, "TokenClassifier", "MegaForTokenClassification")
class MegaTokenClassifier(TokenClassifier):
    pass


@family_task(MegaBackbone, "QuestionAnswerer", "MegaForQuestionAnswering")
class MegaQuestionAnswerer(QuestionAnswerer):
    pass


@family_task(MegaBackbone, "TextEmbedder", "MegaModel")
class MegaTextEmbedder(TextEmbedder):
    pass


__all__ = ["MegaMaskedLM", "MegaTextClassifier", "MegaTokenClassifier", "MegaQuestionAnswerer",
           "MegaTextEmbedder"]
