"""BigBird's tasks: BERT's MLM head (``cls.predictions``), the ``classifier.dense`` ->
``classifier.out_proj`` classifier with the model's activation, token classification, and
Transformers' QA head (``qa_classifier``: a BERT feed-forward block with its residual LayerNorm,
then ``qa_outputs``) whose logits are pushed down by 1e6 over the question (the tokens up to the
first ``sep_token_id``, except the first token)."""

import keras
from keras import ops

from keras_models.layers.activations import get_activation
from keras_models.models.big_bird.backbone import BigBirdBackbone
from keras_models.models.encoder.backbone import dense_rules, norm_rules
from keras_models.models.encoder.tasks import ClassifierDenseOutProj, family_task
from keras_models.tasks.embedder import TextEmbedder
from keras_models.tasks.text import MaskedLM, QuestionAnswerer, TokenClassifier

QUESTION_PENALTY = 1e6


@family_task(BigBirdBackbone, "MaskedLM", "BigBirdForMaskedLM", "BigBirdForPreTraining")
class BigBirdMaskedLM(MaskedLM):
    pass


@family_task(BigBirdBackbone, "TextClassifier", "BigBirdForSequenceClassification")
class BigBirdTextClassifier(ClassifierDenseOutProj):
    inner_activation = None  # the backbone's hidden_act


@family_task(BigBirdBackbone, "TokenClassifier", "BigBirdForTokenClassification")
class BigBirdTokenClassifier(TokenClassifier):
    pass


@family_task(BigBirdBackbone, "QuestionAnswerer", "BigBirdForQuestionAnswering")
class BigBirdQuestionAnswerer(QuestionAnswerer):
    hf_head_patterns = ("qa_classifier.*",)

    def __init__(self, backbone, preprocessor=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        b = backbone
        init = keras.initializers.TruncatedNormal(stddev=b.initializer_range)
        common = dict(dtype=b.dtype_policy, kernel_initializer=init)
        self.qa_intermediate = keras.layers.Dense(b.intermediate_size, name="qa_intermediate", **common)
        self.qa_output = keras.layers.Dense(b.hidden_size, name="qa_output", **common)
        self.qa_norm = keras.layers.LayerNormalization(epsilon=b.layer_norm_eps, name="qa_norm",
                                                       dtype=b.dtype_policy)
        self.qa_dropout = keras.layers.Dropout(b.dropout_rate, dtype=b.dtype_policy)
        self.act = get_activation(b.hidden_act)

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict):
            inputs = {"input_ids": inputs}
        ids = inputs["input_ids"]
        t = ops.shape(ids)[1]
        # the question: tokens before and at the first separator (argmax of 0s is 0: length 1)
        q_len = ops.argmax(ops.cast(ops.equal(ids, self.backbone.sep_token_id), "int32"), axis=-1) + 1
        in_question = ops.cast(ops.arange(t)[None, :] < ops.cast(q_len, "int32")[:, None], "int32")
        if inputs.get("token_type_ids") is None:
            inputs = {**inputs, "token_type_ids": 1 - in_question}
        h = self.backbone(inputs, training=training)
        x = self.qa_intermediate(self.qa_dropout(h, training=training))
        x = self.qa_norm(self.qa_dropout(self.qa_output(self.act(x)), training=training) + h)
        logits = self.qa(x)
        penalty = ops.cast(ops.concatenate([ops.zeros_like(in_question[:, :1]), in_question[:, 1:]], axis=1),
                           logits.dtype) * QUESTION_PENALTY
        logits = logits - penalty[..., None]
        return {"start_logits": logits[..., 0], "end_logits": logits[..., 1]}

    def head_rules(self):
        return (dense_rules("qa_classifier.intermediate.dense", self.qa_intermediate, base=False)
                + dense_rules("qa_classifier.output.dense", self.qa_output, base=False)
                + norm_rules("qa_classifier.output.LayerNorm", self.qa_norm, base=False)
                + dense_rules("qa_classifier.qa_outputs", self.qa, base=False))


@family_task(BigBirdBackbone, "TextEmbedder", "BigBirdModel")
class BigBirdTextEmbedder(TextEmbedder):
    pass


__all__ = ["BigBirdMaskedLM", "BigBirdTextClassifier", "BigBirdTokenClassifier", "BigBirdQuestionAnswerer",
           "BigBirdTextEmbedder"]
