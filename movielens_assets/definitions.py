"""The code location: every stage under ``defs/`` plus this environment's resources. No logic.

``dg dev``, ``dg check defs``, ``dagster dev`` (``workspace.yaml``) and ``dagster code-server``
all load ``defs`` from here.
"""

from pathlib import Path

import dagster as dg

from movielens_assets.resources import build_resources, run_executor
from movielens_assets.settings import Settings


def build_definitions() -> dg.Definitions:
    """Everything the code location holds, configured from the environment (``settings.py``)."""
    settings = Settings.from_env()
    return dg.Definitions.merge(
        dg.load_from_defs_folder(path_within_project=Path(__file__).parent),
        dg.Definitions(
            resources=build_resources(settings),
            executor=run_executor(settings),
        ),
    )


@dg.definitions
def defs() -> dg.Definitions:
    """The code location's definitions."""
    return build_definitions()
