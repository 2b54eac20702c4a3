"""The labels parapipe puts on the containers, images and volumes it makes."""

LABEL_RUN = "io.parapipe.run"
LABEL_PIPELINE = "io.parapipe.pipeline"
LABEL_STEP = "io.parapipe.step"
LABEL_CACHE = "io.parapipe.cache"  # on cache volumes: the cache's name in the spec
LABEL_SOURCE = "io.parapipe.source"  # on source-stage images: the content hash of that stage
