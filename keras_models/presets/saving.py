"""``save_to_preset``: write a model as a Hugging Face folder (config.json, model.safetensors,
tokenizer files) that both keras-models and transformers reload. Written to a temporary sibling
folder and renamed into place, so an interrupted save never leaves a half-written preset."""

import shutil
import tempfile
from pathlib import Path

from keras_models.errors import PresetError
from keras_models.presets.config import write_json
from keras_models.presets.safetensors_io import save_file
from keras_models.presets.weight_map import export_rules


def save_preset(model, path, overwrite=False):
    path = Path(path)
    if path.exists() and any(path.iterdir()) and not overwrite:
        raise PresetError(f"save_to_preset: {path} exists and is not empty (pass overwrite=True)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp"))
    try:
        hf_config = model.config_to_hf()
        write_json(tmp / "config.json", hf_config)
        prefix = getattr(model, "export_prefix", "")
        tensors = dict(export_rules(model.weight_rules(), prefix=prefix))
        save_file(tensors, tmp / "model.safetensors", metadata={"format": "pt"})
        extra = getattr(model, "save_extra_files", None)
        if extra is not None:
            extra(tmp)
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path
