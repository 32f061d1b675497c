"""Training: one cohort's loop (`loop`) and evaluation (`evaluate`), S seeds as one grouped
network (`fused`), the one driver loop with the local executor (`driver`), the process pool
(`pool`), the Ray executor (`ray`) and a study's cost before it runs (`cost`)."""
