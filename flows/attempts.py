"""What one attempt of a flow run tells the Prefect server besides its own states.

Prefect records what the engine sees; around it, a soundsight run also:

- sends soundsight's own log lines (each stage and scene as it finishes, warnings such as a low
  beat confidence or ffmpeg's decoding notes) to the server, so the run's page in the UI shows
  them wherever the run is executed - a worker, the CLI, a test (`attempt`);
- on resuming (a retry: the flow run's second attempt or later), closes what a crashed earlier
  attempt left open: its task runs still Running become Crashed, and its artifacts are removed,
  this attempt publishing its own (`close_earlier_attempts`);
- fails once on a user's error (`SoundsightError`: a missing checkpoint, a bad file), which
  would fail the same way again: the deployment's retry policy is not applied to it, and its
  log lines carry the message without a traceback;
- on an interrupt (Ctrl-C, or the terminal closing) marks the run and its unfinished task runs
  Cancelled before the process exits (`cancel_interrupted_run`, called by the CLI), so the run
  never stays Running on a server that outlives the CLI.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from uuid import UUID

from soundsight.errors import SoundsightError

log = logging.getLogger("soundsight")


@contextlib.contextmanager
def attempt() -> Iterator[None]:
    """The body of a flow run's attempt: logs to the server, earlier attempts closed, user errors final."""
    from prefect.context import FlowRunContext
    from prefect.logging.handlers import APILogHandler

    one_line_user_errors()
    run = getattr(FlowRunContext.get(), "flow_run", None)
    handler = None
    if not any(isinstance(h, APILogHandler) for h in log.handlers):  # the CLI's PREFECT_LOGGING_EXTRA_LOGGERS adds one
        handler = APILogHandler()
        log.addHandler(handler)
    level = log.level
    if log.getEffectiveLevel() > logging.INFO:  # stage lines are INFO
        log.setLevel(logging.INFO)
    try:
        if run is not None and (run.run_count or 1) > 1:
            close_earlier_attempts(run.id, run.run_count)
        yield
    except SoundsightError:
        if run is not None:
            no_retries(run)
        raise
    finally:
        log.setLevel(level)
        if handler is not None:
            log.removeHandler(handler)


def close_earlier_attempts(flow_run_id: UUID, run_count: int) -> None:
    """Crash the task runs earlier attempts left unfinished, and remove those attempts' artifacts.

    A flow-run process that was killed (the OOM killer, a lost host) never reported its in-flight
    scenes: without this they would stay Running in the completed run's graph forever, and its
    progress, script and other artifacts would be listed beside this attempt's.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, FlowRunFilter, FlowRunFilterId
    from prefect.states import Crashed

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        for task_run in runs:
            if task_run.flow_run_run_count < run_count and not (task_run.state and task_run.state.is_final()):
                message = f"its attempt ({task_run.flow_run_run_count}) ended without it; attempt {run_count} resumes"
                client.set_task_run_state(task_run.id, Crashed(message=message), force=True)
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
        for artifact in found:
            client.delete_artifact(artifact.id)


def no_retries(run) -> None:
    """Make this attempt of flow run `run` its last: a user's error would fail the same way again."""
    from prefect.client.orchestration import get_client

    if not run.empirical_policy.retries:
        return
    policy = run.empirical_policy.model_copy(update={"retries": 0})
    with get_client(sync_client=True) as client:
        client.update_flow_run(run.id, empirical_policy=policy)


def cancel_interrupted_run(reason: str, seconds: float = 5.0) -> None:
    """Mark the flow run this thread is running, and its unfinished task runs, Cancelled with `reason`.

    For a signal handler: the run is found from this thread's context; the server is told from a
    helper thread, waited for at most `seconds` (an unreachable server never delays the exit).
    """
    from prefect.context import FlowRunContext

    run = getattr(FlowRunContext.get(), "flow_run", None)
    if run is None:
        return

    def tell() -> None:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
        from prefect.states import Cancelled

        with get_client(sync_client=True) as client:
            client.set_flow_run_state(run.id, Cancelled(message=reason), force=True)
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
            for task_run in runs:
                if not (task_run.state and task_run.state.is_final()):
                    client.set_task_run_state(task_run.id, Cancelled(message=reason), force=True)

    teller = threading.Thread(target=tell, name="soundsight-cancel", daemon=True)
    teller.start()
    teller.join(seconds)


class OneLineUserErrors(logging.Filter):
    """A `SoundsightError` in Prefect's run logs: one line, no traceback.

    Prefect's engine logs a failed run's exception with its traceback, twice; a `SoundsightError`
    is a message meant for the user.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Drop the engine's closing 'exited with unexpected exception'; strip the traceback off the rest."""
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, SoundsightError):
            return True
        if "Engine execution exited" in str(record.msg):
            return False
        record.exc_info, record.exc_text = None, None
        return True


def one_line_user_errors() -> None:
    """Install `OneLineUserErrors` on Prefect's flow-run and task-run loggers (once)."""
    for name in ("prefect.flow_runs", "prefect.task_runs"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, OneLineUserErrors) for f in logger.filters):
            logger.addFilter(OneLineUserErrors())
