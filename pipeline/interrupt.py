"""Stopping a command on SIGINT / SIGTERM: within seconds, leaving only whole files.

Every file a build writes appears under its final name only when complete
(:func:`pipeline.rundir.atomic_write`), and every finished stage and station-day is cached,
so a build can stop at any moment and resume. What must not happen is what Python and
Prefect do by default: the interrupt reaches only the main thread, worker threads keep
running, the interpreter waits for them at exit (and for Prefect's temporary API server,
which the terminal's Ctrl-C has already stopped), and a second Ctrl-C prints a traceback.

:func:`install` sets handlers that, on the first signal, let the main thread unwind for at
most :data:`GRACE_S` seconds and then end the process; :func:`stop_now` (also what a second
signal does) prints one line saying how to resume, ends child processes, removes temporary
files of the run directories this process holds (:func:`hold_run_dir`; another build's
are left alone) and exits at once with status 128 + signal number.

The grace period is counted by a watcher thread that sees every delivery of the signals
(:func:`signal.set_wakeup_fd`), whichever Python handler runs: while a flow runs, Prefect's
engine replaces the SIGTERM handler with its own, whose crash handling then retried, for
minutes, to report to its API server, which a SIGTERM sent to the whole process group
(``docker stop``, a service manager, ``kill -- -PGID``) had already stopped.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from pathlib import Path

#: Seconds the main thread gets to unwind after the first signal before the process ends.
GRACE_S = 3.0

#: Seconds child processes get to end after SIGTERM before they are killed.
CHILD_GRACE_S = 2.0

_lock = threading.Lock()
_state: dict = {"signal": None, "resume": None, "run_dirs": [], "deliveries": 0, "watched": False}
_log = logging.getLogger(__name__)


def set_resume(command: str | None) -> None:
    """Record the command that resumes the work under way."""
    with _lock:
        _state["resume"] = command


def hold_run_dir(root: Path) -> None:
    """Record that this process writes run directory ``root`` (it holds its lock): an
    interrupt removes the temporary files of unfinished writes there, and only there."""
    with _lock:
        _state["run_dirs"].append(Path(root))


def release_run_dir(root: Path) -> None:
    """Undo :func:`hold_run_dir` (the lock of ``root`` is being released)."""
    with _lock:
        if Path(root) in _state["run_dirs"]:
            _state["run_dirs"].remove(Path(root))


def interrupted_by() -> int | None:
    """The number of the signal that interrupted this process, or None."""
    return _state["signal"]


def message() -> str:
    """The one line printed on interruption."""
    name = signal.Signals(_state["signal"] or signal.SIGINT).name
    if _state["resume"]:
        return (
            f"interrupted ({name}): stopped; finished stages and station-days are kept; "
            f"resume with: {_state['resume']}"
        )
    return f"interrupted ({name}): stopped"


def _end_children() -> None:
    """SIGTERM every child process (a program a stage runs, Prefect's server), then SIGKILL."""
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil comes with the dependencies
        return
    with contextlib.suppress(psutil.Error):
        children = psutil.Process().children(recursive=True)
        for child in children:
            with contextlib.suppress(psutil.Error):
                child.terminate()
        _, alive = psutil.wait_procs(children, timeout=CHILD_GRACE_S)
        for child in alive:
            with contextlib.suppress(psutil.Error):
                child.kill()


def stop_now(code: int | None = None) -> None:
    """End the process at once: children, temporary files, then ``os._exit`` (no thread join)."""
    from pipeline.rundir import remove_temporaries

    signum = _state["signal"] or signal.SIGINT
    logging.disable(logging.CRITICAL)  # threads still running log nothing more
    print(message(), file=sys.stderr, flush=True)  # the last line the user sees
    _end_children()
    for root in _state["run_dirs"]:
        with contextlib.suppress(OSError):
            remove_temporaries(root)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(128 + signum if code is None else code)


def _delivered(signum: int) -> None:
    """Count one delivery of ``signum``: the first starts the grace period, a second ends now."""
    with _lock:
        _state["deliveries"] += 1
        second = _state["deliveries"] > 1
        if _state["signal"] is None:
            _state["signal"] = signum
    if second:
        stop_now()
    timer = threading.Timer(GRACE_S, stop_now)
    timer.daemon = True
    timer.start()


def _on_signal(signum: int, frame) -> None:
    """Python handler: counts the delivery unless the watcher does, then unwinds the main thread."""
    if _state["watched"]:
        with _lock:
            if _state["signal"] is None:
                _state["signal"] = signum
    else:
        _delivered(signum)
    raise KeyboardInterrupt


def _watch(fd: int) -> None:
    """Watcher thread: :func:`_delivered` for each SIGINT or SIGTERM byte of the wakeup pipe."""
    handled = {int(signal.SIGINT), int(signal.SIGTERM)}
    while True:
        for signum in os.read(fd, 64):
            if signum in handled:
                _delivered(signum)


def _thread_exception(args: threading.ExceptHookArgs) -> None:
    """``threading.excepthook``: once a signal stops the process, a thread's exception is a
    debug log line (``-v`` shows it), not a traceback on the terminal.

    While the main thread unwinds, threads whose work was cut off fail in their own ways, e.g.
    a process pool's manager thread that finds its workers gone sets an exception on futures
    the main thread has just cancelled (``InvalidStateError``). Before the signal, Python's
    own hook reports the exception as usual.
    """
    if _state["signal"] is None:
        _python_excepthook(args)
        return
    thread = args.thread.name if args.thread is not None else "?"
    _log.debug(
        "thread %s ended after the interrupt with %s: %s",
        thread,
        args.exc_type.__name__,
        args.exc_value,
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )


_python_excepthook = threading.excepthook


def quiet_worker() -> None:
    """Initializer of worker processes forked by a command: signals as a plain process has.

    The parent stops them (:func:`stop_now`); a Ctrl-C, which the terminal sends to every
    process of the group, is ignored, and SIGTERM ends them at once, without the parent's
    handlers (Prefect's would raise inside them, print and carry on).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.set_wakeup_fd(-1)


def install() -> None:
    """Handle SIGINT and SIGTERM as this module describes (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    threading.excepthook = _thread_exception
    if not _state["watched"]:
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)
        signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        threading.Thread(target=_watch, args=(read_fd,), daemon=True, name="signals").start()
        _state["watched"] = True
