import logging
import os

import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_report_header(config):
    return f"KERAS_BACKEND={os.environ['KERAS_BACKEND']}"


@pytest.fixture
def backend():
    import keras

    return keras.backend.backend()


@pytest.fixture(autouse=True)
def _quiet_logs():
    logging.getLogger("keras_models").setLevel(logging.INFO)
    yield


# Test folders whose results cannot depend on KERAS_BACKEND (pure numpy / Rust tokenizers). Under
# tools/test.sh (KM_BACKEND_INDEPENDENT_ONCE=1) they run in the torch pass only, not three times;
# a test there marked ``all_backends`` (it runs a model) still runs in every pass.
BACKEND_INDEPENDENT = ("tests/tokenizers/",)


def pytest_collection_modifyitems(config, items):
    if not os.environ.get("KM_BACKEND_INDEPENDENT_ONCE") or os.environ["KERAS_BACKEND"] == "torch":
        return
    keep, drop = [], []
    for item in items:
        path = str(item.path.relative_to(config.rootpath)).replace(os.sep, "/")
        independent = path.startswith(BACKEND_INDEPENDENT) and item.get_closest_marker("all_backends") is None
        (drop if independent else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
