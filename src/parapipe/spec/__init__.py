"""Load a pipeline spec from YAML and validate it into the model (`load.load_pipeline`)."""
