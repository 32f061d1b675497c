"""Study files: the TOML schema (`schema`), ladders of studies (`ladder`) and the run grid with
its run keys (`grid`). `schema` and `ladder` load neither torch nor escnn."""
