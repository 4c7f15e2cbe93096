"""Campaigns: many personalised videos in one task (rows, manifest, the worker's steps)."""
