"""What a run keeps on disk: its folder, the durations history, the step cache and step outputs."""
