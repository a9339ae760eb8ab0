"""simgen: labeled synthetic image datasets (pybullet physics, pyrender over EGL, COCO labels).

Light to import: heavy backends (pybullet, OpenGL) load only when a pipeline first uses them.
"""
import os as _os

# pyrender/PyOpenGL read this when first imported; EGL renders headless on any Linux box.
_os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

__version__ = "0.1.0"

from .config import SimGenConfig, compose  # noqa: E402
from .errors import (AssetError, ConfigError, OutputError, RenderBackendError,  # noqa: E402
                     SimGenError)
from .pipeline import Pipeline, Sample  # noqa: E402
from .runner import Summary, run  # noqa: E402

__all__ = [
    "__version__", "SimGenConfig", "compose", "run", "Summary", "Pipeline", "Sample",
    "SimGenError", "ConfigError", "AssetError", "OutputError", "RenderBackendError",
]
