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
