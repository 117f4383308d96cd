"""Progress bars for long work (training, sampling, sweeps, feature statistics), shown only to a person.

A bar (tqdm: count, rate, ETA) is drawn on stderr when stderr is a terminal; in a log file or CI it is
switched off entirely and the commands' one-line-per-interval log is all there is. `ASM_TF_PROGRESS=0` turns
bars off on a terminal too, `=1` forces them on.
"""

import contextlib
import os
import sys

import tqdm


def enabled():
    """Whether bars are drawn: ASM_TF_PROGRESS if set, else whether stderr is a terminal."""
    setting = os.environ.get("ASM_TF_PROGRESS", "")
    if setting in ("0", "1"):
        return setting == "1"
    return sys.stderr.isatty()


def bar(total, description, unit, initial=0, show=True):
    """A progress bar over `total` units (a do-nothing one when bars are off or `show` is false, e.g. on a
    worker that is not the chief); use as a context manager and call `update(n)`."""
    return tqdm.tqdm(total=total, initial=initial, desc=description, unit=unit, disable=not (show and enabled()),
                     dynamic_ncols=True, leave=False, file=sys.stderr)


@contextlib.contextmanager
def printing():
    """Clears the bars while a log line is printed (it appears above them) and redraws them after."""
    with tqdm.tqdm.external_write_mode(file=sys.stdout):
        yield
