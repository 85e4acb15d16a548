"""A story file: the data model, parsing, rendering back to Markdown, and the directory layout. No git, no database."""
