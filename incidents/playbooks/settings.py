"""The `playbooks:` settings: where the files are, and what their actions may reach."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class KubernetesSettings(BaseModel):
    """How the Kubernetes actions find their cluster."""

    model_config = ConfigDict(extra="forbid")

    # A kubeconfig file; empty: $KUBECONFIG, then in-cluster configuration, then
    # ~/.kube/config (the order `kubectl` uses, in-cluster first when it is there).
    kubeconfig: str = ""
    # The kubeconfig context to use; empty: the file's current context.
    context: str = ""


class PlaybookSettings(BaseModel):
    """Playbook files and the limits and secrets of their actions."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    # A folder of *.yaml / *.yml playbook files; empty: no playbooks.
    folder: str = ""
    # Secrets that templates may use as `{{ secrets.NAME }}`. Their values are replaced
    # by "[redacted]" in everything recorded: step params, results, output and errors.
    secrets: dict[str, SecretStr] = Field(default_factory=dict)
    # Absolute paths of the programs the `script` action may run.
    script_allowlist: list[str] = Field(default_factory=list)
    # The most output a step keeps (stdout, stderr, response bodies), in bytes.
    max_output_bytes: int = Field(default=16 * 1024, ge=256, le=1024 * 1024)
    # A step's timeout when its file gives none, and the longest a file may give.
    default_step_timeout_seconds: float = Field(default=60.0, gt=0)
    max_step_timeout_seconds: float = Field(default=1800.0, gt=0)
    # How long an approval request waits before the run is expired.
    approval_timeout_seconds: float = Field(default=1800.0, gt=0)
    # The longest silence `silence.create` may create.
    max_silence_seconds: float = Field(default=4 * 3600.0, gt=0)
    # A worker's claim on a run; a run whose claim lapsed is resumed by another worker.
    lease_seconds: float = Field(default=30.0, ge=2)
    # How often the sweep looks for runs to resume and approvals to expire.
    sweep_interval_seconds: float = Field(default=5.0, gt=0, le=60)
    kubernetes: KubernetesSettings = Field(default_factory=KubernetesSettings)
