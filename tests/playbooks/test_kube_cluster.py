"""Which cluster the Kubernetes actions talk to: settings, $KUBECONFIG, in-cluster, ~/.kube."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from kubernetes.client import Configuration

from incidents.playbooks.actions import get, kube_client
from incidents.playbooks.actions.base import ActionContext, ActionError
from incidents.playbooks.actions.kube_client import NO_CLUSTER, ServiceAccount, find_cluster
from incidents.playbooks.settings import KubernetesSettings

from .kube_standin import KubeStandIn, write_kubeconfig
from .servers import self_signed_cert


def kubeconfig(folder: Path, server: str, token: str = "t0k") -> str:
    """A kubeconfig file in its own folder."""
    folder.mkdir(parents=True, exist_ok=True)
    return str(write_kubeconfig(folder, server, token))


@pytest.fixture
def service_account(tmp_path: Path) -> ServiceAccount:
    """A service account's token and CA files, as a pod has them."""
    folder = tmp_path / "serviceaccount"
    folder.mkdir()
    (folder / "token").write_text("pod-token")
    (folder / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    return ServiceAccount(token_path=str(folder / "token"), ca_path=str(folder / "ca.crt"))


IN_CLUSTER_ENV = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}


def test_the_settings_kubeconfig_wins_over_kubeconfig_env(tmp_path: Path) -> None:
    ours = kubeconfig(tmp_path / "a", "http://127.0.0.1:1111")
    env = {"KUBECONFIG": kubeconfig(tmp_path / "b", "http://127.0.0.1:2222"), **IN_CLUSTER_ENV}
    cluster = find_cluster(KubernetesSettings(kubeconfig=ours), environ=env)
    assert cluster.configuration.host == "http://127.0.0.1:1111"
    assert cluster.configuration.api_key["BearerToken"] == "Bearer t0k"
    assert cluster.source.startswith("playbooks.kubernetes.kubeconfig")
    cluster = find_cluster(KubernetesSettings(), environ=env)
    assert (cluster.configuration.host, cluster.source) == ("http://127.0.0.1:2222", "KUBECONFIG")


def test_the_settings_context_picks_a_context_of_the_file(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path, "http://127.0.0.1:1111")
    cluster = find_cluster(KubernetesSettings(kubeconfig=path, context="elsewhere"), environ={})
    assert cluster.configuration.host == "http://127.0.0.1:9"
    with pytest.raises(ActionError, match="nowhere"):
        find_cluster(KubernetesSettings(kubeconfig=path, context="nowhere"), environ={})


def test_in_cluster_comes_before_the_home_kubeconfig(
    tmp_path: Path, service_account: ServiceAccount
) -> None:
    kubeconfig(tmp_path / "home" / ".kube", "http://127.0.0.1:3333")
    env = {"HOME": str(tmp_path / "home"), **IN_CLUSTER_ENV}
    cluster = find_cluster(KubernetesSettings(), environ=env, service_account=service_account)
    configuration = cluster.configuration
    assert cluster.source == "in-cluster service account"
    assert configuration.host == "https://10.0.0.1:443"
    assert configuration.api_key["BearerToken"] == "bearer pod-token"
    assert configuration.ssl_ca_cert == service_account.ca_path
    # Without the service's environment, the home kubeconfig is next.
    cluster = find_cluster(
        KubernetesSettings(), environ={"HOME": env["HOME"]}, service_account=service_account
    )
    assert cluster.configuration.host == "http://127.0.0.1:3333"


def test_no_cluster_at_all_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ActionError) as caught:
        find_cluster(KubernetesSettings(), environ={"HOME": str(tmp_path)})
    assert caught.value.message == NO_CLUSTER
    assert not caught.value.retryable
    # In a pod whose service account files are missing, the message says so.
    missing = ServiceAccount(str(tmp_path / "no-token"), str(tmp_path / "no-ca"))
    with pytest.raises(ActionError) as caught:
        find_cluster(
            KubernetesSettings(),
            environ={"HOME": str(tmp_path), **IN_CLUSTER_ENV},
            service_account=missing,
        )
    assert caught.value.message.startswith(NO_CLUSTER)
    assert "Service token file does not exist" in caught.value.message


def test_a_missing_settings_kubeconfig_is_named(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.yaml")
    with pytest.raises(ActionError, match=f"playbooks.kubernetes.kubeconfig: no such file: {path}"):
        find_cluster(KubernetesSettings(kubeconfig=path), environ={})


def test_an_action_uses_kubeconfig_from_the_environment_and_no_global_state(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    make_ctx: Callable[..., ActionContext],
) -> None:
    before = Configuration._default
    restart = get("kubernetes.rollout_restart")
    assert restart is not None
    p = restart.params.model_validate({"namespace": "shop", "deployment": "checkout"})
    with KubeStandIn() as kube:
        kube.add_deployment("shop", "checkout")
        monkeypatch.setenv("KUBECONFIG", kubeconfig(tmp_path, kube.url, kube.token))
        restart.run(p, make_ctx())
        assert [r.method for r in kube.requests] == ["PATCH"]
    assert Configuration._default is before
    # And with nothing configured, the action fails with the clear message.
    monkeypatch.delenv("KUBECONFIG")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "empty-home"))
    with pytest.raises(ActionError, match="no Kubernetes cluster configured"):
        restart.run(p, make_ctx())


def test_an_action_in_a_pod_uses_its_service_account_over_tls(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    make_ctx: Callable[..., ActionContext],
) -> None:
    cert, key = self_signed_cert(tmp_path / "cluster")
    token = tmp_path / "token"
    token.write_text("pod-token")
    monkeypatch.setattr(
        kube_client, "DEFAULT_SERVICE_ACCOUNT", ServiceAccount(str(token), str(cert))
    )
    monkeypatch.delenv("KUBECONFIG", raising=False)
    scale = get("kubernetes.scale")
    assert scale is not None
    p = scale.params.model_validate({"namespace": "shop", "deployment": "api", "replicas": 3})
    with KubeStandIn(token="pod-token", tls=(cert, key)) as kube:
        kube.add_deployment("shop", "api", replicas=1)
        monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        monkeypatch.setenv("KUBERNETES_SERVICE_PORT", kube.url.rsplit(":", 1)[1])
        assert scale.run(p, make_ctx()).result == {"from": 1, "to": 3}
        assert [r.authorization for r in kube.requests] == ["bearer pod-token"] * 2
        # A server whose certificate the service account's CA did not sign is refused.
        other_cert, _ = self_signed_cert(tmp_path / "other")
        monkeypatch.setattr(
            kube_client, "DEFAULT_SERVICE_ACCOUNT", ServiceAccount(str(token), str(other_cert))
        )
        with pytest.raises(ActionError, match="cannot reach the Kubernetes API") as caught:
            scale.run(p, make_ctx())
        assert not caught.value.retryable
