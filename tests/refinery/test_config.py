"""Config errors name the key and what is allowed; nothing invalid gets through."""
import pytest

from refinery import config as C


def error_of(overrides: list[str]) -> str:
    raw = C.apply_overrides(C.to_dict(C.PipelineConfig()), overrides)
    with pytest.raises(C.ConfigError) as info:
        C.validate(raw, "params.yaml")
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_defaults_validate_and_round_trip_through_yaml(tmp_path):
    cfg = C.PipelineConfig()
    path = tmp_path / "params.yaml"
    path.write_text(C.dump_yaml(cfg))
    assert C.load(path) == cfg


def test_unknown_key_names_the_key_and_the_allowed_ones():
    message = error_of(["teacher.trian.lr=0.1"])
    assert message.startswith("params.yaml: teacher.trian: unknown key")
    assert "model, train" in message


def test_wrong_literal_lists_allowed_values():
    message = error_of(["distill.loss=nope"])
    assert "distill.loss" in message and "'kd'" in message and "'nope'" in message


def test_wrong_type_and_range_name_the_key():
    assert "teacher.train.epochs" in error_of(["teacher.train.epochs=many"])
    assert "teacher.train.lr" in error_of(["teacher.train.lr=-1"])
    assert "greater than 0" in error_of(["teacher.train.lr=-1"])


def test_cross_field_rules():
    assert "top_k (9) must be <= num_experts (4)" in error_of(["upcycle.top_k=9"])
    assert "duplicates" in error_of(["unlearn.methods=[retrain, ssd, ssd]"])
    assert "forget.fraction" in error_of(["forget.mode=fraction", "forget.fraction=1.0"])
    assert "divisible" in error_of(["teacher.model.dim=30", "teacher.model.heads=4"])


def test_overrides_parse_yaml_values():
    raw = C.apply_overrides({}, ["a.b=3", "a.c=[1, 2]", "d=null", "e=text"])
    assert raw == {"a": {"b": 3, "c": [1, 2]}, "d": None, "e": "text"}
    with pytest.raises(C.ConfigError, match="expected key=value"):
        C.apply_overrides({}, ["novalue"])


def test_bad_yaml_file_is_one_line(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("seed: [unclosed\n")
    with pytest.raises(C.ConfigError, match="not valid YAML"):
        C.load(path)
    with pytest.raises(C.ConfigError, match="file not found"):
        C.load(tmp_path / "missing.yaml")


def test_presets_validate():
    from pathlib import Path

    for preset in (Path(__file__).parents[2] / "pipelines").glob("*.yaml"):
        C.validate(C.deep_merge(C.to_dict(C.PipelineConfig()), C.read_yaml(preset)), str(preset))


def test_committed_params_yaml_is_complete():
    """params.yaml in the repository is what `refinery run --pipeline NAME` writes for its preset:
    every key dvc.yaml names is there, so `dvc repro`, a sweep's clone and the nightly flow run it
    as committed."""
    from pathlib import Path

    from refinery.resolve import resolve_config

    root = Path(__file__).resolve().parents[2]
    committed = (root / "params.yaml").read_text()
    name = C.read_yaml(root / "params.yaml")["name"]
    assert committed == C.dump_yaml(resolve_config(root, name, [])), "rerun `refinery run --pipeline NAME`"
