"""Shared test helpers: tiny models, references written without the project's code, process launchers."""
