"""simgen: labeled synthetic image datasets (pybullet physics, pyrender over EGL, COCO labels).

Light to import: heavy backends (pybullet, OpenGL) load only when a pipeline first uses them.
Importing it leaves the process environment alone: the renderer picks EGL for its own
OpenGL unless PYOPENGL_PLATFORM says otherwise (simgen.render.gl_platform), and the CLI sets
it for the processes it starts.
"""
from .config import SimGenConfig, compose
from .errors import AssetError, ConfigError, OutputError, RenderBackendError, SimGenError
from .pipeline import Pipeline, Sample
from .runner import Summary, run
from .version import __version__

__all__ = [
    "__version__", "SimGenConfig", "compose", "run", "Summary", "Pipeline", "Sample",
    "SimGenError", "ConfigError", "AssetError", "OutputError", "RenderBackendError",
]
