"""Text generation: GenerationConfig, logits processors, greedy/sampling/beam decode loops over a
fixed-size KV cache compiled per backend, stop strings and streamers. ``GenerationMixin`` gives
CausalLM (and Seq2SeqLM) their ``generate``."""

from keras_models.generation.config import GenerationConfig, GenerationError, UnknownGenerationArgumentError
from keras_models.generation.mixin import GenerationMixin
from keras_models.generation.streamers import TextIteratorStreamer, TextStreamer, TokenCallbackStreamer

__all__ = [
    "GenerationConfig", "GenerationError", "UnknownGenerationArgumentError", "GenerationMixin",
    "TextStreamer", "TextIteratorStreamer", "TokenCallbackStreamer",
]
