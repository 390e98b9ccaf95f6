"""Decoder-only families: one DecoderBackbone, one module per family shape.

llama: Llama, Mistral, Qwen2, Mixtral; llama_likes: Qwen3, Qwen3-MoE, Qwen2-MoE, OLMo, OLMo 2,
Granite, Phi-3, Cohere, SmolLM3; llama4: Llama 4 text; gemma_phi: Gemma, Gemma 2, Gemma 3 (text), Phi, StableLM,
Starcoder2; gpt_oss_deepseek: GPT-OSS, DeepSeek-V2, DeepSeek-V3; gpt: GPT-2,
GPTBigCode, OPT, GPT-NeoX, GPT-J, Falcon, BLOOM; more: GPT-Neo, OpenAI GPT, Persimmon, CodeGen,
BioGPT, MPT, XGLM, CTRL, GPT-NeoX-Japanese."""

from keras_models.models.decoder import gemma_phi, gpt, gpt_oss_deepseek, llama, llama4, llama_likes, more
from keras_models.models.decoder.backbone import DecoderBackbone
from keras_models.models.decoder.gemma_phi import *  # noqa: F401,F403
from keras_models.models.decoder.gpt import *  # noqa: F401,F403
from keras_models.models.decoder.gpt_oss_deepseek import *  # noqa: F401,F403
from keras_models.models.decoder.llama import *  # noqa: F401,F403
from keras_models.models.decoder.llama4 import *  # noqa: F401,F403
from keras_models.models.decoder.llama_likes import *  # noqa: F401,F403
from keras_models.models.decoder.more import *  # noqa: F401,F403

__all__ = ["DecoderBackbone", *llama.__all__, *llama_likes.__all__, *llama4.__all__, *gemma_phi.__all__, *gpt.__all__,
           *gpt_oss_deepseek.__all__, *more.__all__]
