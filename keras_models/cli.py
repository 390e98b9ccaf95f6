"""``keras-models`` command line.

    keras-models [--backend jax|torch|tensorflow] COMMAND ...

    demo                               the end-to-end demo (semantic search, then fine-tuning)
    run TASK --model PRESET INPUT...   a pipeline from the shell; one JSON line per input
    generate --model PRESET PROMPT     stream generated text to stdout
    convert SRC DEST                   Hugging Face folder <-> Keras (.keras) model, verified
    info PRESET                        architecture, parameters, dtype, files, tasks
    models                             the supported-models table

``--backend`` sets KERAS_BACKEND before Keras is imported. Errors are printed on one line
(``error: ...``) with exit status 1; ``--traceback`` shows the full trace.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

BACKENDS = ("jax", "torch", "tensorflow")


def _parser():
    p = argparse.ArgumentParser(prog="keras-models", description="Hugging Face checkpoints as Keras 3 models.")
    p.add_argument("--backend", choices=BACKENDS, help="Keras backend (sets KERAS_BACKEND)")
    p.add_argument("--traceback", action="store_true", help="show full tracebacks on errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    d = sub.add_parser("demo", help="run the end-to-end demo", add_help=False)
    d.add_argument("demo_args", nargs=argparse.REMAINDER)

    r = sub.add_parser("run", help="run a pipeline; prints one JSON line per input")
    r.add_argument("task", help="pipeline task, e.g. fill-mask, text-classification, question-answering")
    r.add_argument("--model", required=True, help="preset: folder, hf://org/name or named preset")
    r.add_argument("inputs", nargs="*", help="inputs; JSON values (objects, lists) are parsed; '-' or "
                   "none reads one input per line from stdin")
    r.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE",
                   help="pipeline argument (VALUE parsed as JSON when it can be), repeatable")
    r.add_argument("--batch-size", type=int, default=1)
    r.add_argument("--progress", action="store_true", help="progress bar on stderr")

    g = sub.add_parser("generate", help="generate text from a prompt, streamed to stdout")
    g.add_argument("--model", required=True)
    g.add_argument("prompt")
    g.add_argument("--max-new-tokens", type=int, default=32)
    g.add_argument("--do-sample", action="store_true")
    g.add_argument("--temperature", type=float)
    g.add_argument("--top-k", type=int)
    g.add_argument("--top-p", type=float)
    g.add_argument("--seed", type=int)
    g.add_argument("--chat", action="store_true", help="wrap the prompt as a user message (chat template)")

    c = sub.add_parser("convert", help="Hugging Face folder <-> Keras model file, with a verification pass")
    c.add_argument("src", help="a preset (folder, hf://, named) or a .keras file")
    c.add_argument("dest", help="a .keras file or a folder (Hugging Face layout)")
    c.add_argument("--task", help="task class to load (e.g. TextClassifier); default: from config.json")
    c.add_argument("--dtype", help="convert weights to this dtype (e.g. bfloat16)")
    c.add_argument("--overwrite", action="store_true")
    c.add_argument("--atol", type=float, default=1e-5, help="verification tolerance")

    i = sub.add_parser("info", help="describe a preset")
    i.add_argument("preset")
    i.add_argument("--json", action="store_true", help="print JSON instead of text")

    m = sub.add_parser("models", help="print the supported-models table (Markdown)")
    m.add_argument("--json", action="store_true", help="print JSON rows instead of Markdown")
    return p


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    if "demo" in argv:  # everything after `demo` belongs to the demo's own parser (--help included)
        cut = argv.index("demo") + 1
        args, extra = parser.parse_known_args(argv[:cut])
        args.demo_args, extra = argv[cut:], []
    else:
        args, extra = parser.parse_known_args(argv)
    if extra:
        # inputs of `run` may follow its options: `run TASK --model M --arg k=v text1 text2`
        if args.command != "run" or any(x.startswith("--") for x in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.inputs = list(args.inputs) + extra
    if args.backend:
        os.environ["KERAS_BACKEND"] = args.backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        return _COMMANDS[args.command](args) or 0
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # one readable line for users; --traceback for the full story
        if args.traceback:
            raise
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1


# --- commands --------------------------------------------------------------------------------------
def _demo(args):
    from keras_models import demo

    extra = list(args.demo_args)
    if args.backend and "--backend" not in extra:
        extra += ["--backend", args.backend]
    return demo.main(extra)


def _parse_value(text):
    try:
        return json.loads(text)
    except (json.JSONDecodeError, ValueError):
        return text


def _run(args):
    from keras_models.pipelines import pipeline

    kwargs = {}
    for item in args.arg:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--arg {item!r}: expected KEY=VALUE")
        kwargs[key.replace("-", "_")] = _parse_value(value)
    inputs = list(args.inputs)
    if not inputs or inputs == ["-"]:
        inputs = [line.rstrip("\n") for line in sys.stdin if line.strip()]
    parsed = [_parse_value(x) if x[:1] in "{[" else x for x in inputs]
    pipe = pipeline(args.task, model=args.model, batch_size=args.batch_size, progress=args.progress)
    # one call over all inputs (batched); question-answering takes its dicts as one list
    results = pipe(parsed, **kwargs)
    if len(parsed) == 1 and not (isinstance(results, list) and len(results) == 1 and pipe.task != "fill-mask"):
        results = [results]
    for r in results:
        print(json.dumps(r, ensure_ascii=False), flush=True)


def _generate(args):
    import keras_models as km
    from keras_models.generation.streamers import TextStreamer

    model = km.CausalLM.from_preset(args.model)
    tokenizer = model.preprocessor.tokenizer
    prompt = args.prompt
    if args.chat:
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                               add_generation_prompt=True)
    kwargs = {k: v for k, v in (("temperature", args.temperature), ("top_k", args.top_k),
                                ("top_p", args.top_p)) if v is not None}
    streamer = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    model.generate(prompt, max_new_tokens=args.max_new_tokens, do_sample=args.do_sample, seed=args.seed,
                   streamer=streamer, **kwargs)
    sys.stdout.write("\n")


def _convert(args):
    import keras
    from tqdm.auto import tqdm

    # (a .keras file's classes: keras.saving.load_model imports their families on demand, compat's
    # registry fallback installed by ``import keras_models``)

    bar = tqdm(total=3, desc="convert", unit="step", file=sys.stderr)
    bar.set_postfix_str(f"loading {args.src}")
    src_is_keras = str(args.src).endswith(".keras")
    if src_is_keras:
        model = keras.saving.load_model(args.src, safe_mode=True)  # never runs lambdas from the file
        if args.dtype:
            raise ValueError("--dtype applies when loading a preset, not a .keras file")
    else:
        model = _load_preset_model(args.src, args.task, args.dtype)
    bar.update()
    bar.set_postfix_str(f"writing {args.dest}")
    dest_is_keras = str(args.dest).endswith(".keras")
    if dest_is_keras:
        if os.path.exists(args.dest) and not args.overwrite:
            raise FileExistsError(f"{args.dest} exists (pass --overwrite)")
        model.save(args.dest)
    else:
        model.save_to_preset(args.dest, overwrite=args.overwrite)
        if not src_is_keras:
            _copy_tokenizer_files(args.src, args.dest)
    bar.update()
    bar.set_postfix_str("verifying")
    reloaded = keras.saving.load_model(args.dest, safe_mode=True) if dest_is_keras else type(model).from_preset(args.dest)
    inputs = _verification_inputs(model)
    diff = _max_diff(model(inputs, training=False), reloaded(inputs, training=False))
    bar.update()
    bar.close()
    tol = args.atol if not args.dtype else max(args.atol, 1e-2)
    status = "ok" if diff <= tol else "FAILED"
    print(f"converted {args.src} -> {args.dest} ({type(model).__name__}); verification: max abs diff "
          f"{diff:.3g} (tolerance {tol:g}) {status}")
    if diff > tol:
        raise RuntimeError(f"verification failed: outputs differ by {diff:.3g} > {tol:g}")


def _load_preset_model(preset, task, dtype):
    import keras_models as km
    from keras_models.models.registry import backbone_for_config
    from keras_models.presets.config import load_hf_config
    from keras_models.presets.resolve import resolve_preset

    if task:
        if not hasattr(km, task):
            raise ValueError(f"--task {task!r}: not a keras-models class (e.g. Backbone, TextClassifier)")
        return getattr(km, task).from_preset(preset, dtype=dtype)
    folder = resolve_preset(preset)
    hf = load_hf_config(folder)
    backbone_cls = backbone_for_config(hf, source=str(folder / "config.json"))  # its tasks loaded
    archs = hf.get("architectures") or []
    for name, task_cls in backbone_cls.tasks.items():
        if name != "TextEmbedder" and any(a in task_cls.hf_architectures for a in archs):
            return task_cls.from_preset(folder, dtype=dtype)
    if (folder / "modules.json").is_file() and "TextEmbedder" in backbone_cls.tasks:
        return km.TextEmbedder.from_preset(folder, dtype=dtype)
    return km.Backbone.from_preset(folder, dtype=dtype)


def _tokenizer_files():
    from keras_models.tasks.text import TOKENIZER_FILES

    return TOKENIZER_FILES + ("special_tokens_map.json", "added_tokens.json", "target.spm",
                              "chat_template.jinja", "preprocessor_config.json", "generation_config.json")


def _copy_tokenizer_files(src, dest):
    import shutil
    from pathlib import Path

    from keras_models.presets.resolve import resolve_preset

    folder = resolve_preset(src)
    for name in _tokenizer_files():
        if (folder / name).is_file() and not (Path(dest) / name).exists():
            shutil.copy(folder / name, Path(dest) / name)


def _verification_inputs(model):
    import numpy as np

    backbone = getattr(model, "backbone", model)
    dummy = backbone.dummy_inputs()
    if "input_ids" not in dummy:
        return dummy
    rng = np.random.default_rng(0)
    shape = (2, 8)
    out = {}
    for key, value in dummy.items():
        if key.endswith("input_ids"):
            out[key] = rng.integers(0, getattr(backbone, "vocab_size", 2), size=shape).astype("int32")
        elif key.endswith("attention_mask"):
            out[key] = np.ones(shape, "int32")
        else:
            out[key] = np.zeros(shape, np.asarray(value).dtype)
    return out


def _max_diff(a, b):
    import keras
    import numpy as np

    if isinstance(a, dict):
        return max(_max_diff(a[k], b[k]) for k in a)
    a = np.asarray(keras.ops.convert_to_numpy(a), dtype=np.float32)
    b = np.asarray(keras.ops.convert_to_numpy(b), dtype=np.float32)
    return float(np.abs(a - b).max()) if a.size else 0.0


def _info(args):
    info = _preset_info(args.preset)
    if args.json:
        print(json.dumps(info, indent=2))
        return
    width = max(len(k) for k in info)
    for key, value in info.items():
        if isinstance(value, list):
            value = ", ".join(map(str, value)) if key != "files" else "\n" + "\n".join(
                f"{'':{width + 2}}{f}" for f in value)
        print(f"{key:<{width}}  {value}")


def _preset_info(preset):
    from keras_models.errors import KerasModelsError
    from keras_models.pipelines import TASKS
    from keras_models.presets.config import load_hf_config
    from keras_models.presets.resolve import resolve_preset
    from keras_models.presets.safetensors_io import CheckpointReader

    folder = resolve_preset(preset)
    hf = load_hf_config(folder)
    info = {"preset": str(preset), "folder": str(folder), "model_type": hf.get("model_type"),
            "architectures": hf.get("architectures") or []}
    try:
        from keras_models.models.registry import backbone_for_config

        backbone_cls = backbone_for_config(hf, source=str(folder / "config.json"))  # its tasks loaded
        info["keras_models_class"] = f"{backbone_cls.__module__}.{backbone_cls.__name__}"
        tasks = sorted(backbone_cls.tasks)
        archs = set(info["architectures"])
        info["head_in_checkpoint"] = [t for t, c in backbone_cls.tasks.items() if archs & set(c.hf_architectures)]
    except KerasModelsError as e:
        info["keras_models_class"] = f"unsupported ({e})"
        tasks = []
    info["tasks"] = ["Backbone"] + tasks
    info["pipelines"] = sorted(t for t, (module, _, cls) in TASKS.items()
                               if cls in info["tasks"] and _has_inputs_for(folder, module))
    reader = CheckpointReader(folder)
    try:
        names = list(reader.keys())
        info["parameters"] = int(sum(_prod(reader.shape(n)) for n in names))
        info["tensors"] = len(names)
        info["weight_dtypes"] = sorted({str(_dtype_of(reader, n)) for n in names})
    finally:
        reader.close()
    info["config_dtype"] = hf.get("torch_dtype") or hf.get("dtype")
    info["files"] = [f"{p.relative_to(folder)} ({_size(p.stat().st_size)})"
                     for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.startswith(".")]
    return info


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "spiece.model",
                    "sentencepiece.bpe.model", "tokenizer.model", "source.spm")


def _has_inputs_for(folder, pipeline_module):
    """A pipeline needs what its inputs go through: an image processor for image pipelines
    (preprocessor_config.json), a tokenizer for text ones, both for zero-shot image ones."""
    images = (folder / "preprocessor_config.json").is_file()
    text = any((folder / f).is_file() for f in _TOKENIZER_FILES) or any(folder.glob("*.model"))
    if pipeline_module == "image":
        return images
    if pipeline_module == "zero_shot_image":
        return images and text
    return text


def _dtype_of(reader, name):
    return reader._files[reader.file_of(name)].dtype(name)


def _prod(shape):
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _size(n):
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def _models(args):
    rows, render = _models_table()
    if args.json:
        keys = ("architecture", "model_type", "tasks", "backends_verified")
        print(json.dumps([dict(zip(keys, r)) for r in rows()], indent=2))
    else:
        print(render(), end="")


def _models_table():
    """``rows`` and ``render`` of tools/gen_models_table.py (the one table generator)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "tools" / "gen_models_table.py"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the models table needs a source checkout of keras-models")
    spec = importlib.util.spec_from_file_location("_km_gen_models_table", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.rows, module.render


_COMMANDS = {"demo": _demo, "run": _run, "generate": _generate, "convert": _convert, "info": _info,
             "models": _models}

if __name__ == "__main__":
    sys.exit(main())
