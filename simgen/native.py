"""Native libraries' manners: pybullet imported without its C-level banner, and C-level
stdout/stderr silenced for a block (pybullet's banner, V-HACD's progress). Imports nothing
of simgen's."""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager


@contextmanager
def quiet_c_output():
    """Silence C-level stdout/stderr (pybullet's banner, V-HACD's progress) for a block."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        os.close(devnull)
        yield
        try:  # flush C stdio while the fds still point to /dev/null
            import ctypes

            ctypes.CDLL(None).fflush(None)
        except Exception:
            pass
    finally:
        for fd, dup in zip((1, 2), saved):
            os.dup2(dup, fd)
            os.close(dup)


def import_pybullet():
    """Import pybullet without its C-level 'build time' banner."""
    if "pybullet" in sys.modules:
        return sys.modules["pybullet"]
    with quiet_c_output():
        import pybullet
    return pybullet
