"""Reading params.yaml: every malformed file is one ParamsError naming it, never a traceback, and
any document (fuzzed with hypothesis) is either valid within the schema's bounds or refused."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from esrgan.models import RRDBNet
from esrgan.training.config import MAX_SEED
from esrgan.yaml_file import MAX_DEPTH, YamlFileError, parse_yaml
from pipeline.errors import ParamsError
from pipeline.params import load_params, parse_params

ROOT = Path(__file__).resolve().parents[2]
DEMO = yaml.safe_load((ROOT / "params.yaml").read_text())


def write(tmp_path: Path, content: bytes | str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            (ROOT / "params.yaml").read_text(encoding="utf-8").encode("utf-16"),
            r"not UTF-8 text \(byte 0xff at offset 0\)",
        ),
        (b"model:\n  scale: 4\n\xe9\n", r"not UTF-8 text \(byte 0xe9 at offset 18\)"),
        ("a: " + "[" * 5000 + "]" * 5000, f"nested more than {MAX_DEPTH} levels deep"),
        ("a:\n" + "".join("  " * i + "b:\n" for i in range(1, 60)), f"nested more than {MAX_DEPTH} levels deep"),
        ("model:\n  scale: 4\n  scale: 2\n", r"line 3, column 3: duplicate key 'scale'"),
        ("model: {}\nmodel: {}\n", r"line 2, column 1: duplicate key 'model'"),
        ("a: [1, 2", r"cannot read YAML \(line 1, column 9: expected ',' or '\]'"),
        (
            "a: &a [1,1,1,1,1,1,1,1,1,1]\n"
            + "".join(
                f"{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n"
                for p, c in zip("abcde", "bcdef", strict=True)
            ),
            "more than 100000 values once aliases are expanded",
        ),
        ("x" * (1 << 20 + 1), "larger than 1024 KiB"),
        ("- 1\n- 2\n", "expected a mapping at the top level"),
    ],
    ids=[
        "utf-16",
        "latin-1-byte",
        "5000-deep",
        "60-deep-mapping",
        "duplicate-key",
        "duplicate-section",
        "unclosed",
        "alias-bomb",
        "huge",
        "a-list",
    ],
)
def test_a_malformed_file_is_one_params_error_naming_it(tmp_path: Path, content: bytes | str, message: str) -> None:
    path = write(tmp_path, content)
    with pytest.raises(ParamsError, match=message) as info:
        load_params(path)
    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith(f"{path}: ")


def test_the_shipped_profiles_have_no_duplicate_keys_and_load() -> None:
    for path in (ROOT / "params.yaml", ROOT / "configs" / "params.paper.yaml"):
        load_params(path)


def test_merge_keys_are_not_duplicates() -> None:
    assert parse_yaml("base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\n", "t") == {
        "base": {"x": 1},
        "other": {"x": 1, "y": 2},
    }


def test_a_list_where_a_name_belongs_is_a_field_error_not_a_traceback() -> None:
    doc = copy.deepcopy(DEMO)
    doc["register"]["selection"]["metric"] = ["x"]
    with pytest.raises(ParamsError, match=r"register\.selection\.metric: Input should be"):
        parse_params(doc, "params.yaml")


def test_unparsable_keys_are_one_error() -> None:
    with pytest.raises(YamlFileError, match="cannot read YAML"):
        parse_yaml("? [a, b]\n: 1\n? [a, b]\n: 2\n", "t")  # an unhashable key


# --- fuzzing: any value anywhere is either accepted within bounds or refused as ParamsError -------

_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["cuda", "cpu", "auto", "niqe", "fixed", "multistep", "1e32", "0.5", ""]),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=8,
)


def _paths(node: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    return out


PATHS = _paths(DEMO)


def _set(doc: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


def _assert_usable(doc: dict[str, Any]) -> None:
    """What training and evaluation assume of an accepted document."""
    params = parse_params(doc, "fuzz")
    model = params.model
    assert model.num_feat <= 1024 and model.num_block <= 256 and model.num_grow <= 1024
    assert 0 <= params.runtime.seed <= MAX_SEED
    for section in (params.pretrain_psnr, params.finetune_gan):
        assert 1 <= section.data.batch_size <= 4096 and 1 <= section.iterations <= 10**9
        assert math.isfinite(section.optimizer.lr) and 0 < section.optimizer.lr <= 1
    for weight in params.finetune_gan.loss_weights.model_dump().values():
        assert math.isfinite(weight)
    assert all(0.0 <= a <= 1.0 for a in params.interpolate.alphas)
    assert math.isfinite(params.registration.selection.psnr_margin_db)
    RRDBNet(**model.model_dump()).to("meta")  # the architecture can be built


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(PATHS), _VALUES), min_size=1, max_size=3))
def test_any_edit_of_the_demo_profile_is_accepted_within_bounds_or_refused(
    edits: list[tuple[tuple[str, ...], Any]],
) -> None:
    doc = copy.deepcopy(DEMO)
    for path, value in edits:
        try:
            _set(doc, path, value)
        except (TypeError, KeyError):  # an earlier edit replaced a parent with a scalar
            continue
    try:
        _assert_usable(doc)
    except ParamsError as exc:
        assert exc.problems and all(line.startswith("fuzz: ") for line in exc.problems)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_any_text_is_parsed_or_refused_in_one_line(text: str) -> None:
    try:
        data = parse_yaml(text, "t")
    except YamlFileError as exc:
        assert len(str(exc).splitlines()) == 1 and str(exc).startswith("t: ")
        return
    try:
        parse_params(data, "t")
    except ParamsError as exc:
        assert all(line.startswith("t: ") for line in exc.problems)
