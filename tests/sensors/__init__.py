"""Tests of the Babou sensors."""
