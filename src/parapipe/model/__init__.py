"""The domain types: a pipeline as loaded from its spec, the image plan, a run's results.

Every layer imports them from here (`from parapipe.model import Pipeline`); they import
nothing of parapipe but `parapipe.errors` (where `Location` lives, so errors stay a leaf).
"""

from parapipe.errors import Location
from parapipe.model.choices import ENGINE_CHOICES, ENGINE_NAMES, OUTPUT_MODES
from parapipe.model.image import CA_BUNDLE_PATH, CA_ENV_VARS, ImagePlan, SourceDelta
from parapipe.model.labels import (
    LABEL_CACHE,
    LABEL_INPUTS,
    LABEL_PIPELINE,
    LABEL_RUN,
    LABEL_SERVICE,
    LABEL_SOURCE,
    LABEL_STEP,
)
from parapipe.model.matrix import (
    MatrixInstance,
    MatrixSpec,
    handoff_folder,
    instance_name,
    label_values,
    split_instance,
)
from parapipe.model.pipeline import (
    DEFAULT_WORKDIR,
    DockerfileBuild,
    ImageSpec,
    Pipeline,
    PrepareSpec,
    Step,
)
from parapipe.model.results import AttemptResult, ImageResult, RunResult, Status, StepResult
from parapipe.model.run import Prewarm, RunInfo
from parapipe.model.service import Readiness, Service

__all__ = [
    "CA_BUNDLE_PATH",
    "CA_ENV_VARS",
    "DEFAULT_WORKDIR",
    "ENGINE_CHOICES",
    "ENGINE_NAMES",
    "LABEL_CACHE",
    "LABEL_INPUTS",
    "LABEL_PIPELINE",
    "LABEL_RUN",
    "LABEL_SERVICE",
    "LABEL_SOURCE",
    "LABEL_STEP",
    "OUTPUT_MODES",
    "AttemptResult",
    "DockerfileBuild",
    "ImagePlan",
    "ImageResult",
    "ImageSpec",
    "Location",
    "MatrixInstance",
    "MatrixSpec",
    "Pipeline",
    "PrepareSpec",
    "Prewarm",
    "Readiness",
    "RunInfo",
    "RunResult",
    "Service",
    "SourceDelta",
    "Status",
    "Step",
    "StepResult",
    "handoff_folder",
    "instance_name",
    "label_values",
    "split_instance",
]
