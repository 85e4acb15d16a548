"""The git hook shims that ``storysync install-hooks`` installs (hooks/ holds the same)."""
