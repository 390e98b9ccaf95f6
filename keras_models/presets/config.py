"""Reading Hugging Face config.json (and sibling JSON files) with errors that name the file."""

import json
from pathlib import Path

from keras_models.errors import ConfigError, PresetError


def read_json(path, required=True):
    path = Path(path)
    if not path.is_file():
        if required:
            raise PresetError(f"{path.name} not found in {path.parent}")
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"Malformed JSON in {path}: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def load_hf_config(folder):
    return read_json(Path(folder) / "config.json")


def require(config, key, path="config.json", types=(int,)):
    """Fetch ``config[key]`` or raise ConfigError naming the key and file."""
    if key not in config:
        raise ConfigError(f"{path} is missing required key {key!r}")
    value = config[key]
    if types and not isinstance(value, types) or isinstance(value, bool) and bool not in types:
        raise ConfigError(f"{path}: key {key!r} has invalid value {value!r}")
    return value


def write_json(path, data):
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
