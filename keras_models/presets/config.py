"""Reading Hugging Face config.json (and sibling JSON files) with errors that name the file."""

import contextlib
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


def read_processor_part(folder, part):
    """(settings, source) of a processor part -- ``part`` "feature_extractor" or "image_processor" --
    from ``preprocessor_config.json``, else from the entry Transformers 5 nests in
    ``processor_config.json``; None when neither holds it."""
    folder = Path(folder)
    flat = folder / "preprocessor_config.json"
    if flat.is_file():
        return read_json(flat), str(flat)
    nested = folder / "processor_config.json"
    if nested.is_file():
        value = read_json(nested).get(part)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise ConfigError(f"{nested}: {part} must be a JSON object, got {type(value).__name__}")
        return value, f"{nested} ({part})"
    return None


def load_hf_config(folder):
    path = Path(folder) / "config.json"
    config = read_json(path)
    check_common_keys(config, str(path))
    return config


def check_common_keys(config, source="config.json"):
    """Types of the keys every loader reads before a spec does (model_type, architectures, labels,
    dtype); ConfigError naming the key and ``source``."""
    def bad(key, expected):
        raise ConfigError(f"{source}: key {key!r} must be {expected}, got {config[key]!r}")

    if config.get("model_type") is not None and not isinstance(config["model_type"], str):
        bad("model_type", "a string")
    archs = config.get("architectures")
    if archs is not None and not (isinstance(archs, list) and all(isinstance(a, str) for a in archs)):
        bad("architectures", "a list of class names")
    for key in ("torch_dtype", "dtype"):
        if config.get(key) is not None and not isinstance(config[key], str):
            bad(key, "a dtype name")
    id2label = config.get("id2label")
    if id2label is not None:
        if not isinstance(id2label, dict):
            bad("id2label", "an object of class index -> label")
        for k in id2label:
            try:
                index = int(k)
            except (TypeError, ValueError):
                index = -1
            if index < 0:
                bad("id2label", "keyed by class indices 0, 1, ...")
    if config.get("label2id") is not None and not isinstance(config["label2id"], dict):
        bad("label2id", "an object of label -> class index")
    n = config.get("num_labels")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0 or n >= 2**31):
        bad("num_labels", "a non-negative integer")


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


# Exceptions that building a model from a config can raise when a value is out of range (an
# unknown activation name, a size that does not divide, a shape Keras refuses): the config is the
# only input at that point, so they are reported as the config's fault, with the original chained.
_BUILD_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError, ZeroDivisionError, OverflowError)


@contextlib.contextmanager
def building_from(source, what):
    """Turn an error raised while building ``what`` from the config in ``source`` into a
    ConfigError naming the file (typed errors pass through unchanged)."""
    from keras_models.errors import KerasModelsError

    try:
        yield
    except KerasModelsError:
        raise
    except _BUILD_ERRORS as e:
        raise ConfigError(f"{source}: cannot build {what} from this config: {type(e).__name__}: {e}") from e


# A model built from config.json may hold more values than its checkpoint (a new task head, an
# untied copy), but not many more: anything beyond twice the checkpoint plus this many values is a
# config asking for sizes the checkpoint cannot fill, refused before any memory is allocated.
SIZE_SLACK = 2**24


def _checkpoint_counts(folder):
    """(number of tensors, number of values) of the safetensors checkpoint in ``folder``."""
    import math

    from keras_models.presets.safetensors_io import CheckpointReader

    reader = CheckpointReader(folder)
    try:
        keys = list(reader.keys())
        return len(keys), sum(math.prod(reader.shape(k)) for k in keys)
    finally:
        reader.close()


# Keys that count repeated layers (or experts): each one built costs Python objects, so a count the
# checkpoint cannot fill (more than it has tensors) is refused before building anything.
LAYER_COUNT_KEYS = ("num_hidden_layers", "num_layers", "n_layer", "n_layers", "encoder_layers", "decoder_layers",
                    "num_encoder_layers", "num_decoder_layers", "depths", "num_experts", "num_local_experts",
                    "n_routed_experts", "num_blocks", "block_sizes", "iou_head_depth", "num_multimask_outputs")


def check_layer_counts(config, folder, source):
    """ConfigError naming the key if a layer count in ``config`` (nested configs included) exceeds
    the number of tensors of the checkpoint in ``folder``."""
    tensors, _ = _checkpoint_counts(folder)

    def walk(c, where):
        for key, value in c.items():
            if isinstance(value, dict):
                walk(value, f"{where}{key}.")
            elif key in LAYER_COUNT_KEYS:
                items = value if isinstance(value, list) else [value]
                total = sum(v for v in items if isinstance(v, int) and not isinstance(v, bool))
                if total > tensors:
                    raise ConfigError(f"{source}: key {where}{key}={value!r} asks for more layers than the "
                                      f"checkpoint in {folder} has tensors ({tensors})")

    walk(config, "")


def check_model_size(model, folder, source):
    """ConfigError if ``model`` (built with deferred variables) asks for far more values than the
    checkpoint in ``folder`` holds; the message names the largest variables."""
    import math

    _, held = _checkpoint_counts(folder)
    sizes = [(math.prod(v.shape), v.path, tuple(v.shape)) for v in model.weights]
    wanted = sum(s[0] for s in sizes)
    if wanted > 2 * held + SIZE_SLACK:
        largest = ", ".join(f"{p} {s}" for _, p, s in sorted(sizes, key=lambda s: -s[0])[:3])
        raise ConfigError(
            f"{source} describes a model of {wanted:,} values but the checkpoint in {folder} holds "
            f"{held:,}: a size in config.json is wrong (largest variables: {largest})")
