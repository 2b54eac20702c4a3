"""The labels parapipe puts on the containers, images and volumes it makes."""

LABEL_RUN = "io.parapipe.run"
LABEL_PIPELINE = "io.parapipe.pipeline"
LABEL_STEP = "io.parapipe.step"
LABEL_CACHE = "io.parapipe.cache"  # on cache volumes: the cache's name in the spec
LABEL_SERVICE = "io.parapipe.service"  # on a service's container: its name in the spec
