"""Which phases a task runs, and the prompt of each.

Phases by weight follow upstream orc's sets. Each phase's prompt is a template shipped in
``orc/runs/prompts/<phase>.md``; a project overrides one by committing
``.orc/prompts/<phase>.md``. Whatever the template, orc appends the completion protocol: the
phase loop depends on the JSON object that ends the agent's last message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from string import Template

from orc.errors import EXIT_USAGE, OrcError

PHASES_BY_WEIGHT: dict[str, tuple[str, ...]] = {
    "trivial": ("implement",),
    "small": ("spec", "implement", "review"),
    "medium": ("spec", "tests", "implement", "review", "docs"),
    "large": ("spec", "breakdown", "tests", "implement", "review", "docs"),
}
ALL_PHASES = ("spec", "breakdown", "tests", "implement", "review", "docs")
# Phases whose final message (without its JSON) is kept for later phases.
ARTIFACT_PHASES = ("spec", "breakdown")
PROJECT_PROMPTS_DIR = Path(".orc") / "prompts"
PROMPT_LIMIT_BYTES = 64 * 1024

COMPLETION_PROTOCOL = """

---
When this phase is finished, end your final message with one JSON object on its own lines:
{"status": "complete", "summary": "<one or two sentences>"}
If you cannot finish without a decision or information from a person, end with
{"status": "blocked", "summary": "<what you need, as a question>"}
Nothing may follow the JSON object.
"""

CONTINUE_PROMPT = (
    "Continue with the $phase phase of $task_id. When it is finished (or you are blocked), "
    "end your final message with the JSON object described at the start."
)
RESUME_PROMPT = (
    "A person answered while the task was blocked:\n\n$note\n\n"
    "Continue with the $phase phase of $task_id, and end with the JSON object as before."
)


class PromptError(OrcError):
    """A project's prompt override cannot be used."""

    status = 400
    code = "bad_prompt"
    exit_code = EXIT_USAGE

    def __init__(self, message: str) -> None:
        super().__init__(message)


@dataclass(frozen=True)
class PhaseContext:
    """What a phase's prompt may refer to: the task and what earlier phases produced."""

    task_id: str
    title: str
    description: str
    base_commit: str
    artifacts: dict[str, str] = field(default_factory=dict)
    review_findings: str = ""

    def values(self, phase: str) -> dict[str, str]:
        return {
            "task_id": self.task_id,
            "title": self.title,
            "description": self.description or "(no description)",
            "base_commit": self.base_commit,
            "phase": phase,
            "spec": self.artifacts.get("spec", "(no spec phase for this task)"),
            "breakdown": self.artifacts.get("breakdown", "(no breakdown phase for this task)"),
            "review_findings": self.review_findings or "(none)",
        }


def phases_for(weight: str) -> tuple[str, ...]:
    return PHASES_BY_WEIGHT[weight]


def prompt_template(phase: str, project: Path | None) -> str:
    """The project's override of ``phase``'s prompt if it has one, else orc's."""
    if project is not None:
        override = project / PROJECT_PROMPTS_DIR / f"{phase}.md"
        if override.is_file():
            data = override.read_bytes()
            if len(data) > PROMPT_LIMIT_BYTES:
                raise PromptError(f"{override} is larger than {PROMPT_LIMIT_BYTES} bytes")
            try:
                return data.decode()
            except UnicodeDecodeError:
                raise PromptError(f"{override} is not UTF-8 text") from None
    return resources.files("orc.runs").joinpath("prompts", f"{phase}.md").read_text()


def phase_prompt(phase: str, context: PhaseContext, project: Path | None) -> str:
    """The first prompt of a phase: its template filled in, then the completion protocol."""
    text = Template(prompt_template(phase, project)).safe_substitute(context.values(phase))
    return text.rstrip() + COMPLETION_PROTOCOL


def continue_prompt(phase: str, task_id: str) -> str:
    return Template(CONTINUE_PROMPT).safe_substitute(phase=phase, task_id=task_id)


def resume_prompt(phase: str, task_id: str, note: str) -> str:
    return Template(RESUME_PROMPT).safe_substitute(phase=phase, task_id=task_id, note=note)
