"""``simgen-hydra``: simgen behind Hydra's main decorator, so any Hydra launcher plugin runs sweeps:

    simgen-hydra -m hydra/launcher=joblib scene=tabletop,bin seed=1,2 output_dir=out/sweep
    simgen-hydra -m hydra/launcher=submitit_slurm hydra.launcher.partition=cpu \\
        hydra.launcher.cpus_per_task=8 scene=tabletop,bin output_dir=/shared/sweep

Each job is one plain ``simgen`` run, started as a subprocess with the job's own overrides
(one GL context and physics client per job, the same config handling and one-line errors as
the CLI). Its dataset goes to ``<output_dir>/<key=value,...>`` (the job's overrides), unless
the job's ``output_dir`` uses Hydra's resolver itself, e.g. ``out/${hydra:job.num}``. Every
dataset is byte-identical to ``simgen`` run with those overrides.
"""
from __future__ import annotations

import os
import subprocess
import sys

import hydra
from omegaconf import DictConfig

from .config import register_schema
from .errors import SimGenError

register_schema()


class JobFailed(SimGenError):
    """A sweep job's simgen run failed (its own error line is printed above)."""


def job_overrides(cfg: DictConfig, task: list) -> list:
    """The job's overrides for the simgen CLI. ``output_dir`` comes resolved from Hydra (so
    ``${hydra:job.num}`` works); a plain one shared by the sweep gets a per-job subfolder."""
    from .sweep import folder_name

    def key(o: str) -> str:
        return o.split("=", 1)[0].lstrip("+~")

    raw = [o.split("=", 1)[-1] for o in task if key(o) == "output_dir"]
    own = [o for o in task if key(o) != "output_dir"]
    out = str(cfg.output_dir)
    if own and not (raw and "${" in raw[0]):
        out = os.path.join(out, folder_name(own, []))
    return own + [f"output_dir='{os.path.abspath(out)}'", "progress=false"]


@hydra.main(version_base="1.3", config_path="pkg://simgen.conf", config_name="config")
def _job(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    args = job_overrides(cfg, list(HydraConfig.get().overrides.task))
    r = subprocess.run([sys.executable, "-m", "simgen.cli", *args])
    if r.returncode != 0:
        raise JobFailed(f"simgen {' '.join(args)} exited with {r.returncode}")


def main() -> None:
    _job()


if __name__ == "__main__":  # pragma: no cover
    main()
