"""Bundled webapps."""
