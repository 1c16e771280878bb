"""Plugins shared by every test folder (public, hidden and instructor tests)."""

pytest_plugins = ["tests.graded", "tests.snapshots", "tests.torch_threads", "tests.problems", "tests.stubs"]
