"""The ``numpy_snapshot`` fixture: compare arrays with ``.npz`` files written by the reference.

A test calls ``numpy_snapshot.assert_match(actual, name)`` (``actual`` a tensor, an array or a
dict of them). The snapshot is ``_snapshots/<name>.npz`` beside the test file. It is written only
by the reference solution, on an explicit ``pytest --update-numpy-snapshots``; a missing snapshot
is a failure, never a skip. (The option is not ``--snapshot-update``: that is syrupy's, and pytest
refuses two plugins adding the same option.)
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
import torch

from tests import graded

ArrayLike = torch.Tensor | np.ndarray


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-numpy-snapshots",
        action="store_true",
        dest="update_numpy_snapshots",
        default=False,
        help="(re)write the .npz snapshots from the current code; use only with the reference solution",
    )


def _to_numpy(value: ArrayLike) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().float().numpy() if value.is_floating_point() else value.detach().cpu().numpy()
    return np.asarray(value)


class NumpySnapshot:
    def __init__(self, directory: Path, update: bool, rtol: float = 1e-4, atol: float = 1e-5):
        self.directory, self.update, self.rtol, self.atol = directory, update, rtol, atol

    def assert_match(
        self,
        actual: ArrayLike | Mapping[str, ArrayLike],
        name: str,
        rtol: float | None = None,
        atol: float | None = None,
    ) -> None:
        __tracebackhide__ = True  # a failure shows the test's line, not this method's body
        arrays = (
            {k: _to_numpy(v) for k, v in actual.items()}
            if isinstance(actual, Mapping)
            else {"array": _to_numpy(actual)}
        )
        rtol, atol = self.rtol if rtol is None else rtol, self.atol if atol is None else atol
        if graded.grading():  # the grader compares with its own copy of the snapshot
            graded.record_check("snapshot", name=name, arrays=graded.encode(arrays), rtol=rtol, atol=atol)
            return
        path = self.directory / f"{name}.npz"
        if self.update:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(path, **arrays)  # type: ignore[arg-type]  # numpy's stubs take **arrays for allow_pickle
            return
        if not path.is_file():
            pytest.fail(
                f"snapshot {path} is missing; write it from the reference solution with pytest --update-numpy-snapshots"
            )
        with np.load(path) as expected:
            assert sorted(expected.files) == sorted(arrays), f"snapshot {name}: keys {expected.files} vs {list(arrays)}"
            for key, value in arrays.items():
                assert value.shape == expected[key].shape, (
                    f"snapshot {name}[{key}]: shape {value.shape} vs {expected[key].shape}"
                )
                np.testing.assert_allclose(
                    value,
                    expected[key],
                    rtol=rtol,
                    atol=atol,
                    err_msg=f"snapshot {name}[{key}] differs",
                    verbose=False,  # the first mismatches say enough; whole arrays bury them
                )


@pytest.fixture
def numpy_snapshot(request: pytest.FixtureRequest) -> NumpySnapshot:
    directory = Path(request.node.path).parent / "_snapshots"
    return NumpySnapshot(directory, request.config.getoption("update_numpy_snapshots"))
