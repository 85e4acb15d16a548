"""The command line: a thin layer over the library (click commands, the fast hook path, reporters)."""
