"""Load a weight map from a preset folder's safetensors files."""

from keras_models.backend_choice import release_free_heap
from keras_models.presets.safetensors_io import CheckpointReader
from keras_models.presets.weight_map import load_rules


def load_model_weights(folder, rules, prefix="", ignore=(), known_unused=()):
    reader = CheckpointReader(folder)
    try:
        return load_rules(
            rules, reader, prefix=prefix, ignore=ignore, known_unused=known_unused, source=str(folder)
        )
    finally:
        reader.close()
        release_free_heap()  # the host copies just freed (backend_choice, KM_JAX_HEAP_TEMPS)
