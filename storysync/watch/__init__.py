"""Real-time local sync: watchdog events -> debounced batches -> working-tree syncs, with metrics."""
