"""Gemma 3n text task heads: Gemma3nForCausalLM as km.CausalLM (tied head, final logit soft-capping)."""

import keras

from keras_models.models.gemma3n.backbone import Gemma3nTextBackbone
from keras_models.models.registry import register_task
from keras_models.tasks.causal_lm import CausalLM


@keras.saving.register_keras_serializable(package="keras_models")
@register_task(Gemma3nTextBackbone, "CausalLM", ("Gemma3nForCausalLM",))
class Gemma3nCausalLM(CausalLM):
    pass


__all__ = ["Gemma3nCausalLM"]
