"""The report: every number computed once (`analysis`), then drawn as tables (`tables`) and
figures (`figures`) in words from `text`; `python -m ablate.report` (`__main__`) writes them."""
