"""Config-translation helpers shared by the decoder families."""

from keras_models.errors import ConfigError


def rope_from_hf(hf, source="config.json"):
    """(theta, scaling dict or None, partial_rotary_factor) from Transformers 5 ``rope_parameters``
    or the older ``rope_theta`` / ``rope_scaling`` / ``partial_rotary_factor`` keys."""
    params = dict(hf.get("rope_parameters") or {})
    if params and all(isinstance(v, dict) for v in params.values()):
        raise ConfigError(f"{source}: per-layer-type rope_parameters are not supported")
    legacy = dict(hf.get("rope_scaling") or {})
    merged = {**legacy, **params}
    theta = merged.pop("rope_theta", hf.get("rope_theta", 10000.0))
    partial = merged.pop("partial_rotary_factor", hf.get("partial_rotary_factor", 1.0))
    kind = merged.pop("rope_type", merged.pop("type", "default")) or "default"
    scaling = None if kind == "default" else {"rope_type": kind, **merged}
    return float(theta), scaling, float(partial)


def rope_to_hf(theta, scaling, partial=1.0):
    params = {"rope_type": "default", "rope_theta": theta}
    if scaling:
        params.update(scaling)
    if partial != 1.0:
        params["partial_rotary_factor"] = partial
    return {"rope_parameters": params}


def reject(hf, key, bad, source="config.json", why="is not supported"):
    if hf.get(key, None) == bad or (bad is True and hf.get(key)):
        raise ConfigError(f"{source}: {key}={hf.get(key)!r} {why}")


def special_tokens(hf):
    return {k: hf.get(k) for k in ("pad_token_id", "bos_token_id", "eos_token_id")}


REQUIRED = object()
DIMS = ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size")


def translate(hf, table, source="config.json"):
    """Read (our_key, hf_key, default) rows from config.json; REQUIRED rows must be present.
    A row whose ``hf_key`` is None is a constant (``default`` is our value)."""
    out = {}
    for ours, key, default in table:
        if key is None:
            out[ours] = default
            continue
        if key not in hf or hf[key] is None:
            if default is REQUIRED:
                raise ConfigError(f"{source}: missing required key {key!r}")
            out[ours] = default
        else:
            out[ours] = hf[key]
    return out


def untranslate(model, table):
    """The inverse of :func:`translate` for a built backbone (constant rows are skipped)."""
    out = {}
    for ours, key, _ in table:
        if key is None:
            continue
        out[key] = getattr(model, ours) if ours in DIMS else model.options[ours]
    return out
