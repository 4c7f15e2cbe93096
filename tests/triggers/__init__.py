"""Tests of the Babou triggers."""
