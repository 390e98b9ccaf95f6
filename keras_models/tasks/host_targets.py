"""Training entry points for tasks whose labels come as Transformers passes them: one Python entry
per image (detection boxes, segmentation masks), which Keras cannot batch as they are."""


class HostTargetsMixin:
    """``fit`` / ``evaluate`` / ``train_on_batch`` / ``test_on_batch`` (and ``validation_data``) turn
    the labels into fixed-shape arrays with ``_targets(y)`` before Keras sees them; ``_check_training``
    may refuse training first (a family without a loss)."""

    def _targets(self, y):
        return y

    def _check_training(self, y):
        """Called before ``fit`` / ``train_on_batch`` with their labels."""

    def fit(self, x=None, y=None, *args, **kwargs):
        self._check_training(y)
        vd = kwargs.get("validation_data")
        if isinstance(vd, tuple) and len(vd) >= 2:
            kwargs["validation_data"] = (vd[0], self._targets(vd[1])) + tuple(vd[2:])
        return super().fit(x, self._targets(y), *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        return super().evaluate(x, self._targets(y), *args, **kwargs)

    def train_on_batch(self, x, y=None, *args, **kwargs):
        self._check_training(y)
        return super().train_on_batch(x, self._targets(y), *args, **kwargs)

    def test_on_batch(self, x, y=None, *args, **kwargs):
        return super().test_on_batch(x, self._targets(y), *args, **kwargs)
