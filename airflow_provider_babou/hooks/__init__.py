"""Hooks of the Babou provider."""
