"""CANINE's tasks: sequence classification on Transformers' ``pooler_output`` (the deep encoder's
first molecule through ``pooler.dense`` + tanh, then ``classifier``), token classification and
extractive QA on the final character states, and mean-pooled embeddings. Transformers has no
working masked-LM head for CANINE.

CANINE's tokenizer (code points as ids, [CLS] = 0xE000, [SEP] = 0xE001) is not implemented here:
a folder whose tokenizer is a ``CanineTokenizer`` loads without a preprocessor (the tasks take
``input_ids`` such as ``[0xE000, *map(ord, text), 0xE001]``), instead of failing on its files.
"""

import logging

from keras_models.models.canine.backbone import CanineBackbone
from keras_models.presets.config import read_json
from keras_models.models.encoder.tasks import family_task
from keras_models.tasks.embedder import TextEmbedder
from keras_models.tasks.text import QuestionAnswerer, TextClassifier, TokenClassifier


logger = logging.getLogger("keras_models")


class _CodePointInputs:
    """Task mixin: no preprocessor for a CanineTokenizer folder (see the module docstring)."""

    @classmethod
    def preprocessor_from_preset(cls, folder, hf, **kwargs):
        config = folder / "tokenizer_config.json"
        if not (folder / "tokenizer.json").is_file() and config.is_file():
            name = read_json(config).get("tokenizer_class") or ""
            if name.replace("Fast", "") == "CanineTokenizer":
                logger.info("%s: CanineTokenizer (code points) is not implemented; %s takes input_ids",
                            folder, cls.__name__)
                return None
        return super().preprocessor_from_preset(folder, hf, **kwargs)


@family_task(CanineBackbone, "TextClassifier", "CanineForSequenceClassification")
class CanineTextClassifier(_CodePointInputs, TextClassifier):
    def call(self, inputs, training=False):
        if not isinstance(inputs, dict):
            inputs = {"input_ids": inputs}
        _, molecules = self.backbone.encode(inputs, training=training)
        return self.head(molecules[:, 0], training=training)


@family_task(CanineBackbone, "TokenClassifier", "CanineForTokenClassification")
class CanineTokenClassifier(_CodePointInputs, TokenClassifier):
    pass


@family_task(CanineBackbone, "QuestionAnswerer", "CanineForQuestionAnswering")
class CanineQuestionAnswerer(_CodePointInputs, QuestionAnswerer):
    pass


@family_task(CanineBackbone, "TextEmbedder", "CanineModel")
class CanineTextEmbedder(_CodePointInputs, TextEmbedder):
    pass


__all__ = ["CanineTextClassifier", "CanineTokenClassifier", "CanineQuestionAnswerer", "CanineTextEmbedder"]
