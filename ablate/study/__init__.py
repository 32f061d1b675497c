"""Study files: the TOML schema (`schema`) and the run grid with its run keys (`grid`)."""
