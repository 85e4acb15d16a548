"""Checks of story files: the JSON Schema, cross-file rules, and where the bytes come from.

Sources are the work tree, a commit's tree and the git index.
"""
