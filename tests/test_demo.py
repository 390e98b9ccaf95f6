"""The main job, shortened: real MiniLM search ranking and a short fine-tune through fit()."""

import tomllib

from keras_models import demo
from tests.parity import REPO


def test_demo_dataset_is_shipped_and_balanced():
    texts, labels, names = demo.load_topics()
    assert names == ["food", "sports", "technology", "travel"]
    assert len(texts) >= 200 and len(set(texts)) == len(texts)
    assert all(labels.count(i) == labels.count(0) for i in range(4))
    (train_x, _), (test_x, _) = demo.split(texts, labels)
    assert not set(train_x) & set(test_x)


def test_demo_runs_end_to_end():
    lines = []
    result = demo.run(epochs=1, limit=48, batch_size=16, out=lines.append)
    # Real weights: both battery-care sentences outrank the unrelated ones.
    assert {result["ranking"][0], result["ranking"][1]} == {demo.CORPUS[0], demo.CORPUS[5]}
    assert 0.0 <= result["accuracy"] <= 1.0
    assert any(line.startswith("held-out accuracy") for line in lines)


def test_base_install_pulls_no_tensorflow():
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for req in meta["dependencies"] + meta["optional-dependencies"]["jax"] + meta["optional-dependencies"]["torch"]:
        assert not req.lower().startswith(("tensorflow", "tf-", "tf_")), req
