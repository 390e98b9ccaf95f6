"""The ``dtype=`` argument of from_preset: None, a dtype name, a Keras policy, or "auto"."""

import keras

_TORCH_NAMES = {"float32": "float32", "float16": "float16", "bfloat16": "bfloat16", "float64": "float64"}


def resolve_dtype(dtype, hf_config):
    """Return a Keras dtype policy (or None for the global policy)."""
    if dtype is None:
        return None
    if isinstance(dtype, keras.DTypePolicy):
        return dtype
    if not isinstance(dtype, str):  # torch.float16, np.float32, jnp.bfloat16 ... by their name
        dtype = getattr(dtype, "name", None) if not str(dtype).startswith("torch.") else str(dtype)
        dtype = str(dtype).replace("torch.", "")
    if dtype == "auto":
        name = hf_config.get("torch_dtype") or hf_config.get("dtype") or "float32"
        name = str(name).replace("torch.", "")
        if name not in _TORCH_NAMES:
            raise ValueError(f"config.json: unsupported torch_dtype {name!r} for dtype='auto'")
        return keras.DTypePolicy(_TORCH_NAMES[name])
    try:
        return keras.DTypePolicy(dtype)
    except (ValueError, TypeError):
        from keras_models.errors import ConfigError

        raise ConfigError(f"dtype={dtype!r}: not a dtype to load a model in (float32, float16, bfloat16, "
                          "'auto' for config.json's, or a keras.DTypePolicy)") from None
