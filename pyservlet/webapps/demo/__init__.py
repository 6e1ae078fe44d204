"""The demo webapp (see web.toml): the session probe and the seed pages."""
