"""What tasks and backbones share for leaving the process: a preset folder, the hub, a serving
export and a layout map for model parallelism. ``Task`` and ``Backbone`` both mix it in."""

from keras_models.distribution import class_or_instance_method, model_layout_map


class SharingMixin:
    def save_to_preset(self, path, overwrite=False, max_shard_size=None):
        """Write a Hugging Face folder (config.json, weights, tokenizer / processor files) that
        ``from_preset`` and Transformers reload. ``max_shard_size`` (bytes, or "5GB" / "500MiB"):
        weights above it are split into Transformers' sharded layout with its index."""
        from keras_models.presets.saving import save_preset

        save_preset(self, path, overwrite=overwrite, max_shard_size=max_shard_size)

    def push_to_hub(self, repo_id, *, commit_message=None, private=None, token=None, max_shard_size=None,
                    create_repo=True):
        """Save this model as a preset and upload it to the hub repository ``repo_id``
        (``"org/name"`` or ``"hf://org/name[@branch]"``), as Transformers' ``push_to_hub``; it loads
        back with ``from_preset("hf://org/name")`` and Transformers' ``from_pretrained``. Uses
        huggingface_hub's credentials and ``HF_ENDPOINT``."""
        from keras_models.presets.hub import push_to_hub

        return push_to_hub(self, repo_id, commit_message=commit_message, private=private, token=token,
                           max_shard_size=max_shard_size, create_repo=create_repo)

    def export(self, filepath, format="tf_saved_model", verbose=None, input_signature=None, **kwargs):
        """Keras' ``export`` with this model's input signature filled in; ``format="onnx"`` writes
        an ONNX graph through ``keras_models.export.export_onnx`` (torch backend; ``inputs=`` a
        sample dict to trace with)."""
        from keras_models.export import export_model

        return export_model(self, super().export, filepath, format=format, verbose=verbose,
                            input_signature_=input_signature, **kwargs)

    get_layout_map = class_or_instance_method(model_layout_map)
