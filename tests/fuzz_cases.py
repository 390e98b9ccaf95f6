"""The fuzz suite's cases (issue 22), run in a memory-limited subprocess by tests/test_fuzz.py.

``python -m tests.fuzz_cases N [KIND ...]`` draws N hypothesis examples of each kind of bad input
(mutated config.json values, safetensors headers and shard indexes, tokenizer files and chat
templates, SentencePiece models, image and audio inputs and their preprocessor configs), runs the
library on each and classifies the outcome:

* ``ok``: the input was accepted and every output is finite;
* ``typed``: a :mod:`keras_models.errors` error whose message names the file, key or input at fault;
* ``untyped``: anything else (a raw Python / Keras / backend error, a silent NaN, a MemoryError
  under the address-space limit, a typed error that names nothing).

It prints one JSON line with the counts and the first untyped failures (input and traceback tail).
The address space is limited (``KM_FUZZ_MEMORY_GB``, default 4 GiB above what the process holds
after its imports), so a case that allocates much more than the tiny checkpoint fails as a
MemoryError instead of taking the machine down.
"""

from __future__ import annotations

import faulthandler
import json
import os
import resource
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

KINDS = ("config", "safetensors", "index", "tokenizer", "sentencepiece", "chat_template", "image",
         "image_config", "audio", "audio_config")


def _limit_memory():
    gb = float(os.environ.get("KM_FUZZ_MEMORY_GB", "4"))
    with open("/proc/self/status") as f:
        vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    limit = int(vm + gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


class Outcomes:
    def __init__(self):
        self.counts = {}
        self.untyped = []
        self.slowest = []

    def run(self, kind, what, fn, names=()):
        """Run ``fn()``; ``names``: strings of which one must appear in a typed error's message."""
        from keras_models.errors import KerasModelsError

        c = self.counts.setdefault(kind, {"ok": 0, "typed": 0, "untyped": 0})
        start = time.perf_counter()
        # a case that hangs ends the run with every thread's stack and the case on stderr
        print(f"case {kind}: {str(what)[:300]}", file=sys.stderr, flush=True)
        faulthandler.dump_traceback_later(CASE_SECONDS, exit=True)
        try:
            result = fn()
            bad = [k for k, v in _arrays(result) if not np.all(np.isfinite(v))]
            if bad:
                raise AssertionError(f"non-finite output {bad} accepted silently")
            c["ok"] += 1
        except KerasModelsError as e:
            if names and not any(n in str(e) for n in names):
                c["untyped"] += 1
                self.untyped.append({"kind": kind, "case": what, "error": f"typed error names none of {list(names)}: {e!r}"[:600]})
            else:
                c["typed"] += 1
        except BaseException as e:  # noqa: BLE001 -- the point is to catch everything
            if isinstance(e, KeyboardInterrupt):
                raise
            c["untyped"] += 1
            if len(self.untyped) < 40:
                tb = traceback.format_exc().strip().splitlines()
                self.untyped.append({"kind": kind, "case": what, "error": "\n".join(tb[-6:])[:1500]})
        finally:
            faulthandler.cancel_dump_traceback_later()
            self.slowest = sorted(self.slowest + [(time.perf_counter() - start, kind, str(what)[:200])])[-5:]


CASE_SECONDS = 120


def _arrays(result, prefix="out"):
    if result is None:
        return
    if isinstance(result, dict):
        for k, v in result.items():
            yield from _arrays(v, f"{prefix}.{k}")
    elif isinstance(result, (list, tuple)):
        for i, v in enumerate(result):
            yield from _arrays(v, f"{prefix}[{i}]")
    else:
        try:
            import keras

            arr = np.asarray(keras.ops.convert_to_numpy(result))
        except Exception:
            return
        if arr.dtype.kind == "f":
            yield prefix, arr


# --- strategies ------------------------------------------------------------------------------------

def _values():
    from hypothesis import strategies as st

    scalars = st.one_of(
        st.none(), st.booleans(),
        st.integers(-3, 3), st.sampled_from([0, -1, 2**31, 2**40, 10**6, 7, 13]),
        st.floats(allow_nan=True, allow_infinity=True, width=32), st.sampled_from([-1.0, 0.0, 1e30, 1.5]),
        st.text(max_size=8), st.sampled_from(["gelu", "relu", "absolute", "relative_key", "float16", "bert", "llama"]),
    )
    return st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(st.text(max_size=4), scalars, max_size=2))


def _mutated_json():
    """Strategy of functions that mutate a JSON object in place (set, delete, or replace a nested
    value at a random path)."""
    from hypothesis import strategies as st

    @st.composite
    def mutation(draw, obj):
        paths = list(_paths(obj))
        path = draw(st.sampled_from(paths)) if paths else ()
        action = draw(st.sampled_from(["set", "set", "set", "delete"]))
        value = draw(_values())
        return path, action, value

    return mutation


def _paths(obj, prefix=()):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield prefix + (k,)
            if len(prefix) < 3:
                yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:4]):
            yield prefix + (i,)
            if len(prefix) < 3:
                yield from _paths(v, prefix + (i,))


def _apply(obj, path, action, value):
    if not path:
        return value
    parent = obj
    for p in path[:-1]:
        parent = parent[p]
    if action == "delete":
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return obj


# --- cases ---------------------------------------------------------------------------------------

def _copy(folder, tmp):
    out = Path(tmp) / "preset"
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(folder, out)
    return out


def run_cases(n, kinds):
    import keras
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    import keras_models as km
    from tests.presets.fixtures import tiny_classifier

    folder, inputs, _ = tiny_classifier()
    ids = {k: np.asarray(v) for k, v in inputs.items()}
    outcomes = Outcomes()
    tmp = tempfile.mkdtemp(prefix="km-fuzz-")
    conf = dict(max_examples=n, deadline=None, database=None, derandomize=True,
                suppress_health_check=list(HealthCheck))

    def load_and_call(preset):
        model = km.TextClassifier.from_preset(preset)
        return model(ids)

    if "config" in kinds:
        config = json.loads((folder / "config.json").read_text())
        extra_keys = ["position_embedding_type", "model_type", "architectures", "torch_dtype", "dtype",
                      "num_labels", "id2label", "problem_type", "tie_word_embeddings", "rope_scaling",
                      "quantization_config", "layer_norm_eps", "hidden_act", "classifier_dropout"]

        @settings(**conf)
        @given(st.sampled_from(sorted(config) + extra_keys), _values(), st.booleans())
        def config_case(key, value, delete):
            c = json.loads(json.dumps(config))
            if delete:
                c.pop(key, None)
            else:
                c[key] = value
            p = _copy(folder, tmp)
            (p / "config.json").write_text(json.dumps(c))
            outcomes.run("config", {"key": key, "value": repr(value), "delete": delete},
                         lambda: load_and_call(p), names=("config.json", str(p)))

        config_case()

    if "safetensors" in kinds:
        raw = (folder / "model.safetensors").read_bytes()
        header_len = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8:8 + header_len])

        @settings(**conf)
        @given(st.sampled_from(["flip", "truncate", "header", "length"]), st.integers(0, 2**32),
               st.data())
        def safetensors_case(how, pos, data):
            p = _copy(folder, tmp)
            if how == "flip":
                b = bytearray(raw)
                i = pos % min(len(b), 8 + header_len + 64)
                b[i] ^= 1 + pos % 255
                blob = bytes(b)
            elif how == "truncate":
                blob = raw[:pos % len(raw)]
            elif how == "length":
                blob = (pos % 2**40).to_bytes(8, "little") + raw[8:]
            else:
                h = json.loads(json.dumps(header))
                path, action, value = data.draw(_mutated_json()(h))
                h = _apply(h, path, action, value)
                text = json.dumps(h).encode()
                text += b" " * (-len(text) % 8)
                blob = len(text).to_bytes(8, "little") + text + raw[8 + header_len:]
            (p / "model.safetensors").write_bytes(blob)
            outcomes.run("safetensors", {"how": how, "pos": pos}, lambda: load_and_call(p),
                         names=("model.safetensors", "config.json", str(p)))

        safetensors_case()

    if "index" in kinds:
        from safetensors.numpy import load_file, save_file

        tensors = load_file(folder / "model.safetensors")
        names = sorted(tensors)
        half = len(names) // 2

        @settings(**conf)
        @given(st.data())
        def index_case(data):
            p = _copy(folder, tmp)
            (p / "model.safetensors").unlink()
            save_file({k: tensors[k] for k in names[:half]}, p / "model-00001-of-00002.safetensors")
            save_file({k: tensors[k] for k in names[half:]}, p / "model-00002-of-00002.safetensors")
            index = data.draw(st.sampled_from(["mutate", "path"]))
            idx = {"metadata": {"total_size": 1},
                   "weight_map": {k: f"model-0000{1 + (i >= half)}-of-00002.safetensors" for i, k in enumerate(names)}}
            if index == "path":
                k = data.draw(st.sampled_from(names))
                idx["weight_map"][k] = data.draw(st.sampled_from(
                    ["../x.safetensors", "/etc/passwd", "", ".", "model-00003-of-00002.safetensors",
                     "sub/../../y.safetensors", "config.json", "\x00bad"]))
            else:
                path, action, value = data.draw(_mutated_json()(idx))
                idx = _apply(idx, path, action, value)
            (p / "model.safetensors.index.json").write_text(json.dumps(idx))
            outcomes.run("index", {"index": json.dumps(idx)[:300]}, lambda: load_and_call(p),
                         names=("model.safetensors.index.json", "safetensors", "config.json", str(p)))

        index_case()

    if "tokenizer" in kinds:
        tok_json = json.loads((folder / "tokenizer.json").read_text())
        tok_cfg = json.loads((folder / "tokenizer_config.json").read_text())

        @settings(**conf)
        @given(st.sampled_from(["tokenizer.json", "tokenizer_config.json", "truncate"]), st.data())
        def tokenizer_case(which, data):
            p = _copy(folder, tmp)
            if which == "truncate":
                raw = (folder / "tokenizer.json").read_bytes()
                cut = data.draw(st.integers(0, len(raw) - 1))
                (p / "tokenizer.json").write_bytes(raw[:cut])
            else:
                obj = json.loads(json.dumps(tok_json if which == "tokenizer.json" else tok_cfg))
                path, action, value = data.draw(_mutated_json()(obj))
                obj = _apply(obj, path, action, value)
                (p / which).write_text(json.dumps(obj))

            def go():
                tok = km.Tokenizer.from_preset(p)
                out = tok(["the movie was good", "a"], padding=True)
                tok.decode(out["input_ids"][0])
                return None

            outcomes.run("tokenizer", {"which": which}, go,
                         names=("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
                                "pad_token"))

        tokenizer_case()

    if "sentencepiece" in kinds:
        from keras_models.tokenizers.sentencepiece_model import load_model, parse_model

        seed_model = _tiny_spm(tmp)
        raw = seed_model.read_bytes()

        @settings(**conf)
        @given(st.sampled_from(["flip", "truncate", "random"]), st.integers(0, 2**31), st.binary(max_size=64))
        def spm_case(how, pos, junk):
            if how == "flip":
                b = bytearray(raw)
                b[pos % len(b)] ^= 1 + pos % 255
                blob = bytes(b)
            elif how == "truncate":
                blob = raw[:pos % len(raw)]
            else:
                blob = junk
            path = Path(tmp) / "spiece.model"
            path.write_bytes(blob)
            outcomes.run("sentencepiece", {"how": how, "pos": pos}, lambda: load_model(path),
                         names=("spiece.model",))

        spm_case()

    if "chat_template" in kinds:
        from keras_models.tokenizers.chat_template import compile_template  # noqa: F401

        base = km.Tokenizer.from_preset(folder)

        @settings(**conf)
        @given(st.one_of(
            st.text(max_size=40),
            st.sampled_from(["{{ messages[0]['content'] }}", "{% for m in messages %}{{ m.content }}{% endfor %}",
                             "{{ raise_exception('no') }}", "{{ messages[99].content }}", "{% if %}",
                             "{{ ''.__class__.__mro__ }}", "{{ range(10**9) | list }}", "{{ 'a' * 10**10 }}",
                             "{% for i in range(10**12) %}x{% endfor %}", "{{ messages | tojson }}"])),
            st.one_of(st.just([{"role": "user", "content": "hi"}]), st.lists(_values(), max_size=2)))
        def chat_case(template, conversation):
            def go():
                return base.apply_chat_template(conversation, chat_template=template, tokenize=True)

            outcomes.run("chat_template", {"template": template, "conversation": repr(conversation)[:200]}, go,
                         names=("chat", "template", "conversation", "messages"))

        chat_case()

    if "image" in kinds or "image_config" in kinds:
        from keras_models.preprocessing.image import ImageProcessor

        processor = ImageProcessor.from_config({"size": {"height": 8, "width": 8}, "do_resize": True})

        if "image" in kinds:
            @settings(**conf)
            @given(st.lists(st.integers(0, 9), min_size=0, max_size=4),
                   st.sampled_from(["uint8", "float32", "float64", "int64", "bool", "complex64", "object", "U1"]),
                   st.sampled_from(["normal", "nan", "inf", "huge"]), st.booleans())
            def image_case(shape, dtype, fill, as_list):
                def go():
                    arr = np.random.default_rng(0).uniform(0, 255, size=shape)
                    if fill == "nan" and arr.size:
                        arr.flat[0] = np.nan
                    elif fill == "inf" and arr.size:
                        arr.flat[0] = np.inf
                    elif fill == "huge":
                        arr = arr * 1e30
                    arr = arr.astype(dtype) if dtype not in ("U1",) else arr.astype(str)
                    return processor([arr] if as_list else arr)

                outcomes.run("image", {"shape": shape, "dtype": dtype, "fill": fill}, go,
                             names=("image", "images", "pixel"))

            image_case()

        if "image_config" in kinds:
            cfg = processor.get_config()

            @settings(**conf)
            @given(st.data())
            def image_config_case(data):
                c = json.loads(json.dumps(cfg))
                path, action, value = data.draw(_mutated_json()(c))
                c = _apply(c, path, action, value)
                image = np.random.default_rng(1).integers(0, 255, size=(10, 12, 3)).astype("uint8")
                outcomes.run("image_config", {"config": json.dumps(c)[:300]},
                             lambda: ImageProcessor.from_config(c)([image]),
                             names=("preprocessor_config.json", "image_mean", "image_std"))

            image_config_case()

    if "audio" in kinds or "audio_config" in kinds:
        from keras_models.preprocessing.audio import AudioFeatureExtractor

        extractors = {
            "wav2vec2": {"feature_extractor_type": "Wav2Vec2FeatureExtractor", "sampling_rate": 16000,
                         "feature_size": 1, "padding_value": 0.0, "do_normalize": True, "return_attention_mask": True},
            "whisper": {"feature_extractor_type": "WhisperFeatureExtractor", "sampling_rate": 16000, "feature_size": 8,
                        "n_fft": 64, "hop_length": 16, "chunk_length": 1, "padding_value": 0.0},
        }

        if "audio" in kinds:
            @settings(**conf)
            @given(st.sampled_from(sorted(extractors)), st.one_of(st.lists(st.integers(0, 3000), max_size=1), st.lists(st.integers(0, 40), min_size=2, max_size=3)),
                   st.sampled_from(["float32", "float64", "int16", "int64", "bool", "complex64", "U1"]),
                   st.sampled_from(["normal", "nan", "inf", "huge", "silent"]),
                   st.one_of(st.none(), st.sampled_from([16000, 8000, 44100, 0, -1, 7999, 10**9, 16000.5])))
            def audio_case(kind, shape, dtype, fill, rate):
                fe = AudioFeatureExtractor.from_config(extractors[kind])

                def go():
                    w = np.random.default_rng(0).standard_normal(shape)
                    if fill == "nan" and w.size:
                        w.flat[0] = np.nan
                    elif fill == "inf" and w.size:
                        w.flat[0] = np.inf
                    elif fill == "huge":
                        w = w * 1e30
                    elif fill == "silent":
                        w = np.zeros(shape)
                    w = w.astype(str) if dtype == "U1" else w.astype(dtype)
                    return fe(w, sampling_rate=rate)

                outcomes.run("audio", {"extractor": kind, "shape": shape, "dtype": dtype, "fill": fill, "rate": rate},
                             go, names=("waveform", "sampling_rate", "audio"))

            audio_case()

        if "audio_config" in kinds:
            @settings(**conf)
            @given(st.sampled_from(sorted(extractors)), st.data())
            def audio_config_case(kind, data):
                c = json.loads(json.dumps(extractors[kind]))
                path, action, value = data.draw(_mutated_json()(c))
                c = _apply(c, path, action, value)
                w = np.random.default_rng(2).standard_normal(1000).astype("float32")
                outcomes.run("audio_config", {"config": json.dumps(c)[:300]},
                             lambda: AudioFeatureExtractor.from_config(c)([w], sampling_rate=16000),
                             names=("preprocessor_config.json",))

            audio_config_case()

    shutil.rmtree(tmp, ignore_errors=True)
    keras.backend.clear_session()
    return outcomes


def _tiny_spm(tmp):
    """A tiny trained SentencePiece model (the seed the sentencepiece cases mutate)."""
    import sentencepiece as spm

    path = Path(tmp) / "seed"
    text = Path(tmp) / "corpus.txt"
    text.write_text("\n".join(["the movie was good", "a bad film", "great food and slow service"] * 20))
    spm.SentencePieceTrainer.train(input=str(text), model_prefix=str(path), vocab_size=40, model_type="unigram",
                                   minloglevel=2, hard_vocab_limit=False)
    return Path(str(path) + ".model")


def main(argv):
    n = int(argv[0])
    kinds = argv[1:] or list(KINDS)
    import keras_models as km
    from tests.presets.fixtures import tiny_classifier

    km.TextClassifier.from_preset(tiny_classifier()[0])  # imports and first load before the limit
    _limit_memory()
    outcomes = run_cases(n, kinds)
    print("FUZZ-RESULT " + json.dumps({"counts": outcomes.counts, "untyped": outcomes.untyped,
                                          "slowest": outcomes.slowest}))


if __name__ == "__main__":
    main(sys.argv[1:])
