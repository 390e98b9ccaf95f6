from keras_models.models.open_llama.backbone import OpenLlamaBackbone, OpenLlamaCausalLM

__all__ = ["OpenLlamaBackbone", "OpenLlamaCausalLM"]
