"""Routes a stage's output (logging, tqdm, prints) into its Snakemake ``log:`` file."""

from __future__ import annotations

import logging
import sys
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

log = logging.getLogger("siblings")


@contextmanager
def log_to(path: str | Path | None) -> Iterator[None]:
    """Sends stdout, stderr and the ``siblings`` logger to ``path`` for the stage's duration.

    An exception is written to the log and echoed to the real stderr as one clear line, so
    the user sees why a job failed without opening the log. A ``SystemExit`` with a message
    (a stage's clean stop) is that message alone, without a stack trace, and exit status 1.
    """
    if path is None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
        yield
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    real_stdout, real_stderr = sys.stdout, sys.stderr
    with open(path, "w", buffering=1) as f:
        handler = logging.StreamHandler(f)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        sys.stdout = sys.stderr = f
        try:
            yield
        except SystemExit as err:
            if not isinstance(err.code, str):
                raise
            print(err.code, file=f)
            print(f"siblings {err.code} (log: {path})", file=real_stderr)
            raise SystemExit(1) from None
        except BaseException as err:
            traceback.print_exc(file=f)
            print(f"siblings error: {type(err).__name__}: {err} (log: {path})", file=real_stderr)
            raise
        finally:
            sys.stdout, sys.stderr = real_stdout, real_stderr
            log.removeHandler(handler)
