"""files -> database: plan what changed story files mean for the database and apply it in one transaction."""
