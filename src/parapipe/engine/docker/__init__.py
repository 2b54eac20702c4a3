"""The Docker and Podman engines: one CLI engine, its argv builders, container pool and networks."""
