"""Dispatchers: stateless RQ workers that turn TaskSpecs into pods."""
