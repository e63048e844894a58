"""workflows: orchestration over the stages (the sweep and the main pipeline)."""
