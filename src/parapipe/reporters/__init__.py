"""Reporters show a run as it happens and sum it up. They only read results."""
