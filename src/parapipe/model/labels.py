"""The labels parapipe puts on the containers, images and volumes it makes."""

LABEL_RUN = "io.parapipe.run"
LABEL_PIPELINE = "io.parapipe.pipeline"
LABEL_STEP = "io.parapipe.step"
LABEL_CACHE = "io.parapipe.cache"  # on cache volumes: the cache's name in the spec
# On pipeline images: a digest of each input (base, files, env, setup, ...), as JSON, so that
# `parapipe image load` can say which inputs of an archive differ from the spec.
LABEL_INPUTS = "io.parapipe.inputs"
LABEL_SERVICE = "io.parapipe.service"  # on a service's container: its name in the spec
LABEL_SOURCE = "io.parapipe.source"  # on source-stage images: the content hash of that stage
