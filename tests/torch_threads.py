"""The ``one_thread`` fixture, registered for every test folder by the root ``conftest.py``."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def one_thread():
    """Run the test on one CPU thread: tiny models gain nothing from threads, and on a busy
    machine idle threads cost seconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
