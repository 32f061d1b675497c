"""Training: one run group's loop and evaluation (`loop`), S seeds as one grouped network
(`fused`), the one driver loop with the local executor (`driver`) and the Ray executor (`ray`)."""
