"""database -> files: render rows the database changed, write them atomically, commit them."""
