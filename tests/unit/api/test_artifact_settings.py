"""The manifest's typed pre- and postprocessing: legacy spellings, the wire, bad values."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from forja_api.artifact import (
    ArtifactFile,
    InferenceConfig,
    ModelManifest,
    Postprocessing,
    Preprocessing,
)

SHA = "0" * 64


def _manifest(pre: dict[str, object], post: dict[str, object]) -> ModelManifest:
    return ModelManifest.model_validate({
        "format": "onnx", "task": "segmentation",
        "files": {"weights": {"path": "model.onnx", "sha256": SHA, "size": 1}},
        "preprocessing": pre, "postprocessing": post,
    })


def test_legacy_spellings_in_stored_artifacts_read_as_one_attribute() -> None:
    # What artifacts written before the types carry, descriptive keys included.
    m = _manifest(
        {"band_mean": [1.0, 2.0], "band_std": [3.0, 4.0], "patch_size": 32,
         "tile_stride": 16, "multiple_of": 8, "sequence_length": 4, "imgsz": 640,
         "color": "RGB", "quantize": "q = round(p / s)"},
        {"conf": 0.3, "iou": 0.7, "nms": True, "error": "mean squared error"},
    )
    pre, post = m.preprocessing, m.postprocessing
    assert pre.mean == [1.0, 2.0] and pre.std == [3.0, 4.0]
    assert pre.tile == 32 and pre.tile_stride == 16 and pre.multiple_of == 8
    assert pre.frames == 4 and pre.resize == [640, 640]
    assert post.confidence == 0.3 and post.iou == 0.7
    assert Preprocessing.model_validate({"sequenceLength": 2}).frames == 2
    assert Preprocessing.model_validate({"frames": 3}).frames == 3
    assert Preprocessing.model_validate({"mean": [0.5]}).mean == [0.5]


def test_round_trip_is_camel_case_and_lossless() -> None:
    m = _manifest({"tile": 64, "tile_stride": 48, "multiple_of": 16, "mean": [0.1, 0.2],
                   "letterbox": True, "resize": [32, 48], "layout": "nhwc"},
                  {"activation": "sigmoid", "threshold": 0.4, "top_k": 3,
                   "thresholds": {"a": 0.2, "b": 0.9}})
    wire = json.loads(m.to_json())
    assert wire["preprocessing"] == {"resize": [32, 48], "letterbox": True, "layout": "NHWC",
                                     "mean": [0.1, 0.2], "tile": 64, "tileStride": 48,
                                     "multipleOf": 16}
    assert wire["postprocessing"] == {"activation": "sigmoid", "threshold": 0.4,
                                      "thresholds": {"a": 0.2, "b": 0.9}, "topK": 3}
    assert ModelManifest.model_validate_json(m.to_json()) == m
    # Nothing set writes nothing: no nulls on the wire.
    assert json.loads(_manifest({}, {}).to_json())["preprocessing"] == {}


@pytest.mark.parametrize(
    ("kind", "data", "field"),
    [
        (Preprocessing, {"frames": 0}, "frames"),
        (Preprocessing, {"resize": [64, 64, 3]}, "resize"),
        (Preprocessing, {"tile": "big"}, "tile"),
        (Preprocessing, {"layout": "NTCHW"}, "layout"),
        (Postprocessing, {"confidence": 1.5}, "confidence"),
        (Postprocessing, {"activation": "relu"}, "activation"),
    ],
)
def test_bad_value_is_refused_naming_the_field(
    kind: type[Preprocessing | Postprocessing], data: dict[str, object], field: str
) -> None:
    with pytest.raises(ValidationError) as err:
        kind.model_validate(data)
    (error,) = err.value.errors()
    assert error["loc"][0] == field, error
    assert field in str(err.value)


def test_bad_manifest_setting_names_its_path() -> None:
    with pytest.raises(ValidationError) as err:
        _manifest({"tile": -1}, {})
    assert err.value.errors()[0]["loc"] == ("preprocessing", "tile")


def test_stage_parameters_override_and_keep_the_rest() -> None:
    post = Postprocessing(confidence=0.25, iou=0.7, threshold=0.5)
    merged = post.overlaid({"conf": 0.01, "runtime": "onnx", "crop_margin": 0.2})
    assert (merged.confidence, merged.iou, merged.threshold) == (0.01, 0.7, 0.5)
    assert post.confidence == 0.25  # a copy: the manifest's own stays as written
    pre = Preprocessing(frames=2, resize=[8, 8]).overlaid({"sequenceLength": 4})
    assert (pre.frames, pre.resize) == (4, [8, 8])
    with pytest.raises(ValidationError, match="confidence"):
        post.overlaid({"confidence": -1})


def test_filled_from_keeps_what_is_set() -> None:
    pre = Preprocessing(layout="NHWC").filled_from(
        Preprocessing(layout="NCHW", resize=[16, 16]))
    assert (pre.layout, pre.resize) == ("NHWC", [16, 16])


def test_inference_config_reads_hand_made_spellings() -> None:
    cfg = InferenceConfig.model_validate({
        "labels": ["a", "b"], "per_class_thresholds": {"a": 0.3},
        "preprocessing": {"color": "RGB", "resize": [16, 16], "pixel_range": [0, 255]},
        "model_file": "model.tflite",
    })
    assert cfg.class_names == ["a", "b"] and cfg.thresholds == {"a": 0.3}
    assert cfg.preprocessing.resize == [16, 16]
    assert InferenceConfig.model_validate({"class_names": ["x"]}).class_names == ["x"]


def test_artifact_file_still_checks_its_digest() -> None:
    with pytest.raises(ValidationError, match="sha256"):
        ArtifactFile(path="a", sha256="xyz", size=1)
