"""BERT task classes: the generic tasks with BERT's HF head names (their defaults)."""

from keras_models.models.bert.backbone import BertBackbone
from keras_models.models.encoder.tasks import BERT_HEADS, define_tasks

__all__ = define_tasks(globals(), BertBackbone, "Bert", BERT_HEADS)
