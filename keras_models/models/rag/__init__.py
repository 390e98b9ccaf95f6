"""RAG: a DPR question encoder and a seq2seq generator, run on given (or in-memory retrieved) documents."""

from keras_models.models.rag.backbone import RagBackbone, RagSpec, marginalize
from keras_models.models.rag.tasks import RagSequenceGenerator, RagTokenGenerator
from keras_models.models.rag.tokenizer import RagTokenizer

__all__ = ["RagSpec", "RagBackbone", "RagTokenGenerator", "RagSequenceGenerator", "RagTokenizer", "marginalize"]
