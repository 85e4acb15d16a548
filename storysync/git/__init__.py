"""Talking to git: running git commands, reading blobs, commits."""
