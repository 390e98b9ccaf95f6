"""The typed spec mechanism (keras_models/spec.py): reading, writing, checking, nesting."""

import json
from dataclasses import FrozenInstanceError, dataclass

import pytest

from keras_models.errors import ConfigError, UnknownArchitectureError
from keras_models.spec import Spec, const, dim, hf, nested, tower


@dataclass(frozen=True, kw_only=True)
class Inner(Spec):
    width: int = dim("hidden_size")
    eps: float = hf("layer_norm_eps", 1e-5)


@dataclass(frozen=True, kw_only=True)
class Outer(Spec):
    unsupported = {"position_embedding_type": ("absolute",)}
    layers: int = dim(("num_hidden_layers", "n_layer"))
    act: str = hf("hidden_act", "gelu")
    size: int = hf("image_size", 224, read=lambda v: v[0] if isinstance(v, list) else v, write=lambda v: [v, v])
    window: int | None = hf("sliding_window", None)
    shape: tuple = hf("strides", (1, 2))
    fixed: bool = const(True)
    inner: Inner = nested("text_config", Inner)

    def validate(self, source="config.json"):
        if self.window is not None and self.window > 100:
            raise ConfigError(f"{source}: sliding_window={self.window} is larger than 100")


GOOD = {"num_hidden_layers": 2, "image_size": [32, 32], "text_config": {"hidden_size": 8}, "strides": [2, 2]}


def test_reads_defaults_alternatives_conversions_and_nested():
    s = Outer.from_hf(GOOD)
    assert (s.layers, s.act, s.size, s.window, s.shape, s.fixed) == (2, "gelu", 32, None, (2, 2), True)
    assert s.inner == Inner(width=8, eps=1e-5)
    assert Outer.from_hf({**GOOD, "num_hidden_layers": None, "n_layer": 3}).layers == 3
    with pytest.raises(FrozenInstanceError):
        s.layers = 3


def test_writes_back_what_it_reads():
    s = Outer.from_hf(GOOD)
    out = s.to_hf()
    assert out == {"num_hidden_layers": 2, "hidden_act": "gelu", "image_size": [32, 32], "sliding_window": None,
                   "strides": [2, 2], "text_config": {"hidden_size": 8, "layer_norm_eps": 1e-5}}
    assert "fixed" not in json.dumps(out)  # constants are not config.json keys
    assert Outer.from_hf(out) == s


def test_keras_config_round_trip_is_json():
    s = Outer.from_hf(GOOD)
    config = json.loads(json.dumps(s.to_config()))
    assert Outer.from_config(config) == s
    kwargs = {**config, "name": "x"}
    assert Outer.pop_from(kwargs) == s and kwargs == {"name": "x"}


@pytest.mark.parametrize("mutate, words", [
    (lambda c: c.pop("num_hidden_layers"), ["required", "num_hidden_layers", "cfg.json"]),
    (lambda c: c.update(num_hidden_layers=0), ["num_hidden_layers", "positive"]),
    (lambda c: c.update(num_hidden_layers="2"), ["num_hidden_layers", "positive"]),
    (lambda c: c.update(num_hidden_layers=True), ["num_hidden_layers"]),
    (lambda c: c.update(hidden_act=3), ["hidden_act", "str"]),
    (lambda c: c.update(sliding_window=1.5), ["sliding_window", "int"]),
    (lambda c: c.update(sliding_window=500), ["sliding_window", "larger"]),
    (lambda c: c.update(position_embedding_type="relative_key"), ["position_embedding_type", "numerics"]),
    (lambda c: c.pop("text_config"), ["text_config", "missing", "cfg.json"]),
    (lambda c: c.update(text_config=[1]), ["text_config", "object"]),
    (lambda c: c["text_config"].update(hidden_size=-1), ["[text_config]", "hidden_size"]),
    (lambda c: c["text_config"].update(layer_norm_eps=float("nan")), ["layer_norm_eps", "finite"]),
])
def test_bad_values_raise_config_error_naming_key_and_file(mutate, words):
    config = json.loads(json.dumps(GOOD))
    mutate(config)
    with pytest.raises(ConfigError) as info:
        Outer.from_hf(config, source="cfg.json")
    for w in words:
        assert w in str(info.value), str(info.value)


def test_accepted_value_of_an_unsupported_key_passes():
    assert Outer.from_hf({**GOOD, "position_embedding_type": "absolute"}).layers == 2


def test_table_lists_every_field():
    rows = {r[0]: r for r in Outer.table()}
    assert rows["layers"][1:3] == ("num_hidden_layers/n_layer", "required")
    assert rows["fixed"][1] is None and rows["inner"][1] == "text_config"


@dataclass(frozen=True, kw_only=True)
class WithTower(Spec):
    text: dict = tower("text_config", "clip_text_model")


def test_tower_resolves_registered_backbones_and_checks_them():
    s = WithTower.from_hf({"text_config": {"hidden_size": 8, "num_attention_heads": 2}})
    assert s.text["model_type"] == "clip_text_model"  # the default tower type is filled in
    with pytest.raises(UnknownArchitectureError, match="nope"):
        WithTower.from_hf({"text_config": {"model_type": "nope"}}, source="cfg.json")
    with pytest.raises(ConfigError, match=r"cfg.json \[text_config\].*num_attention_heads"):
        WithTower.from_hf({"text_config": {"hidden_size": 8, "num_attention_heads": 3}}, source="cfg.json")


@dataclass(frozen=True, kw_only=True)
class Nullable(Spec):
    window: int | None = hf("sliding_window", 4096)
    eps: float = hf("layer_norm_eps", 1e-5)
    kv: int | None = hf(("num_key_value_heads", "n_kv"), 8)


def test_explicit_null_is_none_for_optional_fields_and_the_default_otherwise():
    assert Nullable.from_hf({}) == Nullable(window=4096, eps=1e-5, kv=8)  # absent: the defaults
    # present and null: "none" where the type admits it (no window), the default where it does not
    s = Nullable.from_hf({"sliding_window": None, "layer_norm_eps": None, "num_key_value_heads": None})
    assert (s.window, s.eps, s.kv) == (None, 1e-5, None)
    assert Nullable.from_hf({"num_key_value_heads": None, "n_kv": 2}).kv == 2  # a set alternative still wins
    assert Nullable.from_hf(s.to_hf()) == s  # None is written as null and read back as None


def test_explicit_null_in_real_configs():
    """Transformers writes every attribute, None included: BART's forced_eos_token_id=None means no
    forced EOS (the default 2 would force one), Gemma 2's attn_logit_softcapping=None no soft-cap."""
    transformers = pytest.importorskip("transformers")
    from keras_models.models.bart.families import BartSpec
    from keras_models.models.decoder.gemma_phi import Gemma2Spec

    bart = transformers.BartConfig(vocab_size=50, d_model=16, forced_eos_token_id=None).to_dict()
    assert "forced_eos_token_id" in bart and BartSpec.from_hf(bart).forced_eos_token_id is None
    assert BartSpec.from_hf({k: v for k, v in bart.items() if k != "forced_eos_token_id"}).forced_eos_token_id == 2
    gemma = transformers.Gemma2Config(vocab_size=50, hidden_size=16, attn_logit_softcapping=None).to_dict()
    assert Gemma2Spec.from_hf(gemma).softcap is None


@pytest.mark.parametrize("model_type", [["bert"], {"a": 1}, 3])
def test_a_non_string_model_type_is_a_config_error(model_type):
    from keras_models.errors import ConfigError
    from keras_models.models.registry import backbone_for_config

    with pytest.raises(ConfigError, match="text_config: model_type must be a string"):
        backbone_for_config({"model_type": model_type}, source="text_config")
    with pytest.raises(ConfigError, match="architectures must be a list"):
        backbone_for_config({"model_type": "nope", "architectures": [{"x": 1}]}, source="config.json")
