"""Running a claimed task: phase by phase, each a loop of agent turns, a commit per phase.

A phase runs turns until the agent's last message ends with its JSON outcome, up to
``max_iterations``; turns of one phase continue one agent session. ``blocked`` pauses the task
with the agent's question; a review with findings sends the task back to implement (a bounded
number of times). While the agent works, a watcher renews the run's lease and reads a person's
requests: cancel ends the turn at once (the agent's process group is killed), pause waits for
the turn to end. A worker that takes over a dead worker's run resumes the interrupted phase's
session; phases already committed are never run again. An agent whose process dies mid-turn,
or that goes silent (the idle watchdog), gets one more try in its session; every failure ends
the run with a reason a person can act on (docs/tasks.md, "When things go wrong").
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from orc.db.models import Run, Task
from orc.errors import OrcError
from orc.projects.git import GitError
from orc.runs import phase_records
from orc.runs.agent import AgentConfig, TurnResult, kill_agent, run_turn
from orc.runs.agent_env import agent_environment, agent_home
from orc.runs.claims import (
    BLOCKED,
    CANCELLED,
    COMPLETED,
    FAILED,
    PAUSED,
    Claim,
    LeaseLost,
    renew_lease,
)
from orc.runs.ending import database_failure_reason, record_end, with_disk_hint
from orc.runs.outcome import PhaseOutcome, parse_outcome
from orc.runs.phases import (
    ARTIFACT_PHASES,
    PhaseContext,
    continue_prompt,
    phase_prompt,
    phases_for,
    resume_prompt,
)
from orc.runs.redaction import Redactor
from orc.runs.transcript import TranscriptItem, append_transcript
from orc.runs.workspace import Workspace, commit_changes, prepare_workspace
from orc.runs.workspace_cleanup import remove_task_workspace
from orc.usage.pricing import PriceList
from orc.usage.recording import UsageRecord, record_usage

log = logging.getLogger("orc.runs")
# API answers Claude Code retries with backoff (CLAUDE_CODE_MAX_RETRIES times); when it gives up
# the run fails with what happened.
API_GAVE_UP = {
    429: "the Anthropic API kept answering 429 (rate limited) through Claude Code's retries",
    529: "the Anthropic API stayed overloaded (529) through Claude Code's retries",
}
CONTROL_POLL_SECONDS = 1.0
RENEW_EVERY_SECONDS = 15.0


@dataclass(frozen=True)
class RunPolicy:
    """What the settings decide about runs (built once per worker)."""

    home: Path
    agent: AgentConfig
    credentials: Mapping[str, str]
    environ: Mapping[str, str]
    prices: PriceList
    secrets: tuple[str, ...] = ()
    max_iterations: int = 10
    max_review_rounds: int = 2
    phase_timeout_seconds: float = 3600.0
    idle_timeout_seconds: float = 600.0
    default_budget_usd: float | None = None
    author_name: str = "orc"
    author_email: str = "orc@localhost"
    phase_models: Mapping[str, str] = field(default_factory=dict)


class RunEnded(Exception):
    """The run stops here with ``status`` and a reason a person can act on."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Watcher:
    """Renews the lease and reads a person's requests while the agent works."""

    def __init__(self, claim: Claim) -> None:
        self.claim = claim
        self.request: str | None = None
        self.lost = False
        self.changed = asyncio.Event()
        self.last_activity = time.monotonic()

    async def watch(self) -> None:
        last_renewal = 0.0
        while True:
            try:
                if time.monotonic() - last_renewal >= RENEW_EVERY_SECONDS:
                    self.request = await renew_lease(self.claim)
                    last_renewal = time.monotonic()
                else:
                    run = await Run.get(id=self.claim.run_id)
                    if run.lease_owner != self.claim.owner:
                        raise LeaseLost(self.claim.run_id)
                    self.request = run.control
            except LeaseLost:
                self.lost = True
                self.changed.set()
                return
            except Exception:  # a database hiccup: try again at the next poll
                log.warning("could not check run %s", self.claim.run_id, exc_info=True)
            if self.request:
                self.changed.set()
            await asyncio.sleep(CONTROL_POLL_SECONDS)


class RunExecution:
    """One claimed run, from its workspace to its end."""

    def __init__(self, claim: Claim, policy: RunPolicy) -> None:
        self.claim = claim
        self.policy = policy
        self.task_id = f"TASK-{claim.task_number:03d}"
        self.redactor = Redactor(policy.secrets)
        self.watcher = Watcher(claim)
        self.workspace: Workspace | None = None

    async def execute(self) -> str:
        """Run to the end (or to a pause); the run's final status."""
        watch = asyncio.create_task(self.watcher.watch())
        try:
            status, reason = await self._phases()
        except RunEnded as ended:
            status, reason = ended.status, ended.reason
        except OrcError as exc:
            status, reason = FAILED, with_disk_hint(exc.message)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                log.exception("run %s of %s failed", self.claim.run_id, self.task_id)
            status, reason = FAILED, with_disk_hint(f"{type(exc).__name__}: {exc}")
        except Exception as exc:
            database_reason = database_failure_reason(exc)
            if database_reason is None:
                log.exception("run %s of %s failed", self.claim.run_id, self.task_id)
            else:
                log.warning("run %s of %s: %s", self.claim.run_id, self.task_id, database_reason)
            status = FAILED
            reason = database_reason or f"internal error: {type(exc).__name__}: {exc}"
        finally:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
        if self.watcher.lost:
            log.warning("run %s: another worker holds it now; stopped", self.claim.run_id)
            return "lost"
        if status == COMPLETED:
            await self._release_workspace()
        await record_end(self.claim, status, reason)
        return status

    async def _release_workspace(self) -> None:
        """A completed task's work is on its branch: its worktree and agent home go (before the
        end is recorded, so that a new run of the task never finds them half removed)."""
        if self.workspace is None:
            return
        try:
            await remove_task_workspace(
                self.workspace.path, agent_home(self.policy.home, self.task_id)
            )
        except Exception:
            log.warning(
                "could not remove the worktree of %s; the worker's sweep tries again",
                self.task_id,
                exc_info=True,
            )

    async def _phases(self) -> tuple[str, str | None]:
        task = await Task.get(number=self.claim.task_number).prefetch_related("project")
        run = await Run.get(id=self.claim.run_id)
        if task.project is None:
            raise RunEnded(FAILED, f"{self.task_id} has no project; create it in a project")
        project = Path(task.project.path)
        workspace = await prepare_workspace(
            project,
            task.project.name,
            self.policy.home,
            self.task_id,
            base=task.base_ref,
            base_commit=task.base_commit,
        )
        self.workspace = workspace
        if task.base_commit != workspace.base_commit:
            task.base_commit = workspace.base_commit
            await task.save(update_fields=["base_commit"])
        phases = phases_for(task.weight)
        while True:
            done = await phase_records.completed_phases(task.number)
            pending = [name for name in phases if name not in done]
            if not pending:
                return COMPLETED, None
            name = pending[0]
            context = PhaseContext(
                task_id=self.task_id,
                title=task.title,
                description=task.description,
                base_commit=workspace.base_commit,
                artifacts={n: d.artifact for n, d in done.items() if d.artifact},
                review_findings=(
                    await phase_records.review_findings(task.number) if run.review_rounds else ""
                ),
            )
            resuming = run.phase == name and run.session_id is not None
            outcome = await self._run_phase(name, context, workspace, project, run, resuming)
            run = await Run.get(id=self.claim.run_id)
            if outcome.status == "blocked":
                await phase_records.finish_phase(task.number, name, "blocked", outcome.summary)
                raise RunEnded(BLOCKED, outcome.summary or f"the agent is blocked in {name}")
            try:
                commit = await commit_changes(
                    workspace,
                    f"{self.task_id} {name}: {outcome.summary or task.title}"[:200],
                    self.policy.author_name,
                    self.policy.author_email,
                )
            except GitError as exc:
                reason = f"could not commit the {name} phase's work: {exc.message}"
                raise RunEnded(FAILED, with_disk_hint(reason)) from exc
            artifact = outcome.body if name in ARTIFACT_PHASES else None
            if name == "review" and outcome.findings:
                artifact = "\n".join(f"- {finding}" for finding in outcome.findings)
            await phase_records.finish_phase(
                task.number, name, "completed", outcome.summary, artifact, commit
            )
            await Run.filter(id=run.id).update(phase=None, session_id=None, iteration=0)
            run = await Run.get(id=run.id)
            if name == "review" and outcome.findings:
                if run.review_rounds >= self.policy.max_review_rounds:
                    raise RunEnded(
                        FAILED,
                        f"review still found {len(outcome.findings)} problem(s) after "
                        f"{run.review_rounds} round(s) of changes",
                    )
                back = tuple(phases[phases.index("implement") :])
                await phase_records.reopen_phases(task.number, back)
                run = await Run.get(id=run.id)

    async def _run_phase(
        self,
        name: str,
        context: PhaseContext,
        workspace: Workspace,
        project: Path,
        run: Run,
        resuming: bool,
    ) -> PhaseOutcome:
        session = run.session_id if resuming else None
        iteration = run.iteration if resuming else 0
        await phase_records.start_phase(self.claim.task_number, run.id, name, session)
        note = run.note
        if note:
            await Run.filter(id=run.id).update(note=None)
        retried_idle = retried_crash = False
        deadline = time.monotonic() + self.policy.phase_timeout_seconds
        while True:
            if iteration >= self.policy.max_iterations:
                raise RunEnded(
                    FAILED,
                    f"the {name} phase did not finish in {self.policy.max_iterations} "
                    "iterations (ORC_AGENT_MAX_ITERATIONS)",
                )
            if note:
                prompt = resume_prompt(name, self.task_id, note)
                note = None
            elif session is None:
                prompt = phase_prompt(name, context, project)
            else:
                prompt = continue_prompt(name, self.task_id)
            iteration += 1
            await phase_records.count_iteration(self.claim.task_number, run.id, name, iteration)
            result, idle = await self._turn(name, iteration, workspace, prompt, session, deadline)
            session = result.session_id or session
            await phase_records.remember_session(run.id, session, result.cost_usd or 0.0)
            await self._record_usage(name, result)
            if idle:
                if retried_idle:
                    raise RunEnded(
                        FAILED,
                        f"the agent sent nothing for {self.policy.idle_timeout_seconds:.0f} s "
                        f"twice in the {name} phase",
                    )
                retried_idle = True
                continue
            if result.crashed:
                if retried_crash:
                    raise RunEnded(
                        FAILED,
                        f"the agent stopped unexpectedly twice in the {name} phase: {result.error}",
                    )
                retried_crash = True
                await self._note(
                    name,
                    iteration,
                    f"the agent stopped unexpectedly ({result.error}); resuming its session once",
                )
                continue
            if result.is_error:
                raise RunEnded(FAILED, self._agent_error(result))
            await self._check_budget()
            # Read now, not the watcher's last poll: a pause asked for as the turn ended counts.
            request = (await Run.get(id=run.id)).control
            if request == "pause":
                raise RunEnded(PAUSED, "paused on request")
            outcome = parse_outcome(result.final_text)
            if outcome is not None:
                return outcome

    async def _turn(
        self,
        name: str,
        iteration: int,
        workspace: Workspace,
        prompt: str,
        session: str | None,
        deadline: float,
    ) -> tuple[TurnResult, bool]:
        """One agent turn, cut short by a cancel, a lost lease, the idle watchdog or the
        phase timeout. Returns the result and whether the watchdog ended it."""
        home = agent_home(self.policy.home, self.task_id)
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        env = agent_environment(self.policy.environ, home, self.policy.credentials)
        agent = self.policy.agent
        model = self.policy.phase_models.get(name) or agent.model
        config = AgentConfig(
            agent.cli, agent.launcher, model, agent.permission_mode, agent.allowed_tools
        )

        async def on_item(item: TranscriptItem) -> None:
            self.watcher.last_activity = time.monotonic()
            await append_transcript(
                self.claim.run_id, self.claim.task_number, name, iteration, [item], self.redactor
            )

        self.watcher.last_activity = time.monotonic()
        pidfile = home / "agent.pid"
        turn = asyncio.create_task(
            run_turn(
                config,
                cwd=workspace.path,
                env=env,
                prompt=prompt,
                session_id=session,
                pidfile=pidfile,
                on_item=on_item,
                on_session=lambda found: phase_records.remember_session(
                    self.claim.run_id, found, 0.0
                ),
            )
        )
        try:
            stop = await self._supervise(turn, deadline, pidfile)
        except asyncio.CancelledError:  # the worker is stopping: the agent goes with it
            kill_agent(pidfile)
            turn.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await turn
            raise
        if stop == "lost":
            raise RunEnded(FAILED, "another worker took the run over")
        if stop == "cancel":
            raise RunEnded(CANCELLED, "cancelled")
        if stop == "timeout":
            raise RunEnded(
                FAILED,
                f"the {name} phase ran longer than {self.policy.phase_timeout_seconds:.0f} s "
                "(ORC_AGENT_PHASE_TIMEOUT)",
            )
        if stop == "idle":
            await self._note(
                name,
                iteration,
                f"no message from the agent for {self.policy.idle_timeout_seconds:.0f} s; "
                "interrupted, trying again",
            )
            return TurnResult(session_id=session), True
        if not turn.cancelled() and turn.exception() is not None:
            # orc failed mid-turn (e.g. it could not store a message): the agent goes too
            kill_agent(pidfile)
        return turn.result(), False

    async def _supervise(
        self, turn: asyncio.Task[TurnResult], deadline: float, pidfile: Path
    ) -> str | None:
        """Wait for ``turn``; end it early (returning why) on a cancel, a lost lease, the
        phase timeout or the idle watchdog."""
        while not turn.done():
            self.watcher.changed.clear()
            waiter = asyncio.create_task(self.watcher.changed.wait())
            try:
                await asyncio.wait(
                    {turn, waiter},
                    timeout=CONTROL_POLL_SECONDS,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                waiter.cancel()
            if turn.done():
                break
            stop = None
            if self.watcher.lost:
                stop = "lost"
            elif self.watcher.request == "cancel":
                stop = "cancel"
            elif time.monotonic() > deadline:
                stop = "timeout"
            elif time.monotonic() - self.watcher.last_activity > self.policy.idle_timeout_seconds:
                stop = "idle"
            if stop:
                kill_agent(pidfile)
                turn.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await turn
                return stop
        return None

    async def _note(self, name: str, iteration: int, text: str) -> None:
        """A line of orc's own in the transcript (what it did about a failure)."""
        await append_transcript(
            self.claim.run_id,
            self.claim.task_number,
            name,
            iteration,
            [TranscriptItem("note", {"text": text})],
            self.redactor,
        )

    def _agent_error(self, result: TurnResult) -> str:
        status = result.api_error_status
        if status == 401:
            return (
                "the Anthropic API refused the credentials (401); set ANTHROPIC_API_KEY or "
                "CLAUDE_CODE_OAUTH_TOKEN for orc's worker"
            )
        detail = result.error or "the agent failed"
        if status in API_GAVE_UP:
            return f"{API_GAVE_UP[status]}; run the task again later ({detail})"[:500]
        if status is not None and status >= 500:
            return (
                f"the Anthropic API failed (HTTP {status}) through Claude Code's retries; "
                f"run the task again later ({detail})"
            )[:500]
        return f"agent error{f' (HTTP {status})' if status else ''}: {detail}"[:500]

    async def _record_usage(self, name: str, result: TurnResult) -> None:
        if not result.usage:
            return
        now = datetime.now(UTC)
        await record_usage(
            self.claim.task_number,
            [
                UsageRecord(
                    model=usage.model,
                    phase=name,
                    occurred_at=now,
                    input_tokens=usage.input_tokens,
                    output_tokens=usage.output_tokens,
                    cache_read_tokens=usage.cache_read_tokens,
                    cache_write_tokens=usage.cache_write_tokens,
                    reported_cost_usd=usage.cost_usd or 0.0,
                )
                for usage in result.usage
            ],
        )

    async def _check_budget(self) -> None:
        task = await Task.get(number=self.claim.task_number)
        budget = (
            task.budget_usd if task.budget_usd is not None else (self.policy.default_budget_usd)
        )
        if budget is None:
            return
        spent = sum(run.cost_usd or 0.0 for run in await Run.filter(task_id=task.number))
        if spent >= budget:
            raise RunEnded(
                PAUSED,
                f"budget reached: ${spent:.2f} of ${budget:.2f}; raise the task's budget and "
                "resume it",
            )
