"""Read-only views of the backlog: lists, readiness, the board, flow metrics (issue 14)."""
