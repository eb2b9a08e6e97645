"""The public names are exactly the intended ones: adding or removing one is a deliberate change."""

from __future__ import annotations

import shoal
import shoal.model


def test_top_level_public_names() -> None:
    assert sorted(shoal.__all__) == sorted(
        [
            "CompileError",
            "ConfigMap",
            "Container",
            "ContainerPort",
            "Deployment",
            "Duration",
            "EnvVar",
            "InvalidObjectsError",
            "LoadTest",
            "Namespace",
            "PermanentError",
            "Pod",
            "Probe",
            "Quantity",
            "RenderError",
            "ReplicatedService",
            "RetryableError",
            "Role",
            "Secret",
            "Service",
            "ShardedService",
            "ShoalError",
            "__version__",
            "compile_objects",
            "load",
            "load_text",
            "render",
        ]
    )
    for name in shoal.__all__:
        assert hasattr(shoal, name), name


def test_model_exports_resolve() -> None:
    for name in shoal.model.__all__:
        assert hasattr(shoal.model, name), name
    public = {n for n in dir(shoal.model) if not n.startswith("_") and n[0].isupper()}
    assert public <= set(shoal.model.__all__) | {"TYPE_CHECKING"}


def test_errors_carry_their_retry_policy() -> None:
    assert issubclass(shoal.InvalidObjectsError, shoal.PermanentError)
    assert issubclass(shoal.RenderError, shoal.PermanentError)
    assert issubclass(shoal.CompileError, shoal.PermanentError)
    assert not issubclass(shoal.RetryableError, shoal.PermanentError)
    assert shoal.RetryableError("later", retry_after=2.5).retry_after == 2.5
