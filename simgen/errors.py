"""Exceptions whose message is the one line a user sees (problem and fix), and exit codes."""


class SimGenError(Exception):
    """An error caused by input or environment; the CLI prints its message on one line."""

    exit_code = 1


class ConfigError(SimGenError):
    """A wrong config value, key or scene name."""

    exit_code = 2


class AssetError(SimGenError):
    """A missing, corrupt or empty asset (mesh, manifest)."""

    exit_code = 3


class RenderBackendError(SimGenError):
    """No usable OpenGL context (EGL missing or broken)."""

    exit_code = 4


class OutputError(SimGenError):
    """The output folder cannot be used (unwritable, or holds a different dataset)."""

    exit_code = 5
