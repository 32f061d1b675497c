"""The only code that reads or writes results files (results/<study>/): the row schemas and
readers (`rows`), and the store of one study's folder with its atomic, locked writes, claims,
checkpoints and superseded rows (`store`)."""

from ablate.results.rows import (
    HISTORY_COLUMNS,
    INVARIANCE_FIELDS,
    RUN_COLUMNS,
    HistoryRow,
    RunRow,
    legacy_rows,
    read_history,
    read_runs,
)
from ablate.results.store import Checkpoint, RunBusy, StudyResults, study_dirs

__all__ = [
    "HISTORY_COLUMNS",
    "INVARIANCE_FIELDS",
    "RUN_COLUMNS",
    "Checkpoint",
    "HistoryRow",
    "RunBusy",
    "RunRow",
    "StudyResults",
    "legacy_rows",
    "read_history",
    "read_runs",
    "study_dirs",
]
