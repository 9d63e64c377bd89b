"""The shipped training configuration builds a model the node can feed."""
from pathlib import Path

import pytest

pytest.importorskip("torch")

from openpixel_ros.adaptation import CONDITIONING_SIZE  # noqa: E402
from openpixel_ros.training.config import load_config  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", sorted((REPO / "config" / "train").glob("*.yaml")), ids=lambda p: p.name)
def test_conditioning_size_matches_the_adaptation_vector(path):
    config = load_config(path)
    if config.network == "click":
        pytest.skip("the click network takes no conditioning vector")
    assert config.model.conditioning_size in (0, CONDITIONING_SIZE), \
        "a model trained on another vector length cannot take the node's adaptation vector"
