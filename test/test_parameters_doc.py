"""The parameter table, config/openpixel.yaml and docs/nodes.md stay in step."""
from pathlib import Path

import yaml

from openpixel_ros.node.parameters import (PARAMS_FILE_NODE_KEY, all_parameters, render_params_markdown,
                                           render_params_yaml)

REPO = Path(__file__).resolve().parents[1]


def test_config_file_is_the_generated_one():
    assert (REPO / "config" / "openpixel.yaml").read_text() == render_params_yaml(), \
        "regenerate: python -m openpixel_ros.node.parameters --yaml > config/openpixel.yaml"


def test_config_holds_every_parameter_at_its_default():
    params = yaml.safe_load((REPO / "config" / "openpixel.yaml").read_text())[PARAMS_FILE_NODE_KEY]["ros__parameters"]
    assert params == {s.name: s.default for s in all_parameters()}


def test_docs_table_is_current():
    docs = (REPO / "docs" / "nodes.md").read_text()
    assert render_params_markdown() in docs, \
        "regenerate the table in docs/nodes.md: python -m openpixel_ros.node.parameters --markdown"


def test_defaults_pass_their_own_validation():
    for spec in all_parameters():
        assert spec.validate(spec.default) is None, spec.name
        assert spec.description, f"{spec.name} has no description"


def test_every_numeric_parameter_has_a_range_in_the_table():
    """Issue 17: an unbounded number (adaptation.denoise_diameter:=1001) stopped inference for good."""
    for spec in all_parameters():
        if isinstance(spec.default, (int, float)) and not isinstance(spec.default, bool):
            assert spec.min is not None and spec.max is not None, f"{spec.name} has no range"
            assert spec.validate(spec.min) is None and spec.validate(spec.max) is None, spec.name
            assert spec.validate(type(spec.default)(spec.max * 2 + 1)) is not None, spec.name
            assert f"Range [{spec.min}, {spec.max}]" in render_params_markdown([spec]), spec.name
