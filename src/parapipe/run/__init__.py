"""One run of a pipeline: the scheduler, the image plan, the prewarm forecast, the secrets,
and the run's state on disk (`state/`)."""
