from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from forja_api.serving import StageArtifact

from . import _server_tiny_models as tm
from ._server_helpers import serve


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("artifacts")


@pytest.fixture(scope="session")
def clf_stage(artifacts: Path) -> StageArtifact:
    return tm.classifier(artifacts)


@pytest.fixture(scope="module")
def clf_client(clf_stage: StageArtifact, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[TestClient]:
    _, client = serve([clf_stage], tmp_path_factory.mktemp("cache"))
    with client:
        yield client
