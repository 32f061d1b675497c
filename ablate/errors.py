"""User-facing errors: each carries one line that names the file, key or row at fault."""


class AblateError(ValueError):
    """An input problem the user can fix; the command line prints it as one line and exits 2."""


class DataError(AblateError):
    """A dataset file is missing, malformed or fails its checksum."""


class StudyError(AblateError):
    """A study file or a command-line override is invalid."""


class ResultsError(AblateError):
    """A results file is unreadable or not written by ablate."""


def expect_one_of(key: str, value, allowed, error: type[Exception] = ValueError) -> None:
    """Raise `error` with the one 'KEY: expected one of A, B, found X' message unless value is allowed."""
    if value not in allowed:
        raise error(f"{key}: expected one of {', '.join(map(str, allowed))}, found {value!r}")
