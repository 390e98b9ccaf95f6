"""The main job: semantic search with a real sentence embedder, then fine-tuning a classifier.

    keras-models demo [--preset all-minilm-l6-v2] [--epochs 3] [--backend jax]

1. Loads the embedded all-MiniLM-L6-v2 preset as a TextEmbedder and ranks sentences by cosine
   similarity to a query.
2. Fine-tunes a TextClassifier (same checkpoint, new head) with ``fit`` on the labelled topic
   sentences shipped in keras_models/data/demo_topics.tsv, reports held-out accuracy and predicts
   on new sentences.
"""

from __future__ import annotations

import argparse
import csv
import time
from importlib import resources

QUERY = "How do I keep my laptop battery healthy?"
CORPUS = [
    "Unplugging a notebook at full charge and avoiding heat helps its cells last longer.",
    "The striker scored twice in the second half to win the cup final.",
    "Our flight to Lisbon was delayed, so we explored the old town the next morning.",
    "Slow-roast the tomatoes with garlic and olive oil before blending them into soup.",
    "A firmware update improved the phone's standby time by almost a day.",
    "Keep lithium-ion batteries between twenty and eighty percent for a longer lifespan.",
]
NEW_SENTENCES = [
    "The goalkeeper saved a penalty in the last minute of extra time.",
    "This graphics card renders games smoothly even at the highest settings.",
    "Add a pinch of smoked paprika to the stew before it simmers.",
    "We took the night train through the Alps and woke up in Vienna.",
]


def load_topics():
    """Return (texts, labels, label_names) from the shipped TSV."""
    path = resources.files("keras_models") / "data" / "demo_topics.tsv"
    with path.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    names = sorted({r["label"] for r in rows})
    return [r["text"] for r in rows], [names.index(r["label"]) for r in rows], names


def split(texts, labels, holdout=0.2, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in sorted(set(labels)):
        idx = [i for i, y in enumerate(labels) if y == c]
        rng.shuffle(idx)
        n = max(1, int(len(idx) * holdout))
        test += idx[:n]
        train += idx[n:]
    rng.shuffle(train)
    pick = lambda ids: ([texts[i] for i in ids], np.array([labels[i] for i in ids]))  # noqa: E731
    return pick(train), pick(test)


def run(preset="all-minilm-l6-v2", epochs=3, batch_size=16, learning_rate=2e-4, sequence_length=32,
        limit=None, out=print):
    import keras
    import numpy as np

    import keras_models as km

    t0 = time.time()
    out(f"keras-models demo on backend {keras.backend.backend()} (preset {preset!r})")
    out("\n[1/2] Semantic search with TextEmbedder")
    embedder = km.TextEmbedder.from_preset(preset)
    vectors = embedder.embed([QUERY] + CORPUS, batch_size=8)
    scores = vectors[1:] @ vectors[0]
    out(f"query: {QUERY}")
    for rank, i in enumerate(np.argsort(-scores), 1):
        out(f"  {rank}. {scores[i]:.3f}  {CORPUS[i]}")

    out("\n[2/2] Fine-tuning a TextClassifier with fit()")
    texts, labels, names = load_topics()
    (x_train, y_train), (x_test, y_test) = split(texts, labels)
    if limit:
        x_train, y_train = x_train[:limit], y_train[:limit]
    out(f"data: {len(x_train)} training / {len(x_test)} held-out sentences, classes {names}")
    clf = km.TextClassifier.from_preset(
        preset, num_classes=len(names), id2label=dict(enumerate(names)), sequence_length=sequence_length
    )
    clf.compile(
        optimizer=keras.optimizers.AdamW(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    np.random.seed(0)  # (keras.utils.set_random_seed would import TensorFlow when installed)
    clf.fit(x_train, y_train, batch_size=batch_size, epochs=epochs, verbose=1)
    _, accuracy = clf.evaluate(x_test, y_test, batch_size=32, verbose=0)
    out(f"held-out accuracy: {accuracy:.3f} on {len(x_test)} sentences")
    probs = keras.ops.convert_to_numpy(keras.ops.softmax(clf.predict(NEW_SENTENCES, verbose=0)))
    out("predictions on new sentences:")
    for text, p in zip(NEW_SENTENCES, probs):
        out(f"  {names[int(p.argmax())]:<10} {p.max():.2f}  {text}")
    out(f"\ndone in {time.time() - t0:.0f}s")
    return {"accuracy": float(accuracy), "ranking": [CORPUS[i] for i in np.argsort(-scores)]}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="keras-models demo", description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="all-minilm-l6-v2")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--limit", type=int, default=None, help="use only this many training sentences")
    parser.add_argument("--backend", choices=["jax", "torch", "tensorflow"], default=None)
    parser.add_argument("--make-examples", metavar="DIR", default=None,
                        help="instead of the demo, write the docs' tiny example presets (tiny-bert, tiny-llama, "
                             "...: random weights) into DIR")
    args = parser.parse_args(argv)
    from keras_models.backend_choice import ensure_backend

    ensure_backend(args.backend)
    if args.make_examples:
        from keras_models.examples import make_examples

        for name, path in make_examples(args.make_examples).items():
            print(f"{name}: {path}")
        return 0
    run(preset=args.preset, epochs=args.epochs, limit=args.limit)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
