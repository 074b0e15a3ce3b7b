"""Nothing soundsight starts or documents lets a stranger in (issue #30, case 12).

Whoever reaches a Dask scheduler or worker runs Python in it. Across hosts the recipe uses Dask's
own mutual TLS (certificates from scripts/make_dask_certificates.sh): scenes render through such a
scheduler, and a client without a certificate its CA signed is refused. A local cluster listens on
127.0.0.1 only; compose publishes the unauthenticated Dask dashboard and media server to
127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from soundsight.media import ffmpeg_exe
from soundsight.schemas import Manifest
from tests.support import free_port, render, stop_process_group

ROOT = Path(__file__).resolve().parent.parent


def case(what: str, outcome: str):
    return pytest.mark.robustness(what=what, outcome=outcome)


def make_certificates(folder: Path) -> Path:
    """The certificates, made as docs/production.md says."""
    subprocess.run([str(ROOT / "scripts" / "make_dask_certificates.sh"), str(folder)], check=True, capture_output=True)
    return folder


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> Path:
    return make_certificates(tmp_path_factory.mktemp("dask-tls"))


def tls_flags(certs: Path, role: str) -> list[str]:
    return ["--tls-ca-file", str(certs / "ca.pem"), "--tls-cert", str(certs / f"{role}.pem"),
            "--tls-key", str(certs / f"{role}.key")]  # fmt: skip


def wait_listening(port: int, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"exited with {proc.returncode}"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise TimeoutError(f"nothing listens on {port}")


@pytest.fixture(scope="module")
def tls_cluster(certificates, tmp_path_factory, prefect_server):
    """`dask scheduler` and one `dask worker` (resource GPU=1, as a GPU host's) over TLS on 127.0.0.1."""
    logs = tmp_path_factory.mktemp("dask-logs")
    port = free_port()
    address = f"tls://127.0.0.1:{port}"
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--protocol", "tls", "--host", "127.0.0.1",
         "--port", str(port), "--no-dashboard", *tls_flags(certificates, "scheduler")],
        stdout=open(logs / "scheduler.log", "w"), stderr=subprocess.STDOUT, start_new_session=True,  # noqa: SIM115
    )  # fmt: skip
    worker = None
    try:
        wait_listening(port, scheduler)
        worker = subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1", "--no-nanny",
             "--no-dashboard", "--resources", "GPU=1", "--host", "127.0.0.1", *tls_flags(certificates, "worker")],
            stdout=open(logs / "worker.log", "w"), stderr=subprocess.STDOUT, start_new_session=True,  # noqa: SIM115
            env=dict(os.environ), cwd=ROOT,
        )  # fmt: skip
        yield address, worker.pid
    finally:
        for proc in (worker, scheduler):
            if proc is not None:
                stop_process_group(proc, grace=10)


def client_tls(certs: Path) -> dict[str, str]:
    """Dask's configuration for a client with its certificate (what DASK_DISTRIBUTED__COMM__TLS__* set)."""
    return {
        "distributed.comm.tls.ca-file": str(certs / "ca.pem"),
        "distributed.comm.tls.client.cert": str(certs / "client.pem"),
        "distributed.comm.tls.client.key": str(certs / "client.key"),
        "distributed.comm.require-encryption": True,
    }


@case("`render.dask_address tls://...` with certificates (the multi-host recipe)",
      "scenes render on the TLS workers; a client without a certificate the CA signed, or over plain tcp://, is refused")  # fmt: skip
def test_scenes_render_through_a_tls_scheduler_that_refuses_strangers(
    tls_cluster, certificates, tiny_wan_dir, music, tmp_path, tmp_path_factory
):
    import dask
    from distributed import Client
    from distributed.security import Security

    address, worker_pid = tls_cluster
    song = tmp_path / "celtic_6s.wav"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-ss", "20", "-t", "6", "-i", str(music / "celtic.ogg"), str(song)],
                   check=True)  # fmt: skip
    groups = {"render": {"backend": "wan", "model": str(tiny_wan_dir), "model_width": 32, "model_height": 32,
                         "dtype": "float32", "device": "cpu", "steps": 2, "width": 64, "height": 64,
                         "dask_address": address}}  # fmt: skip
    with dask.config.set(client_tls(certificates)):
        video, states = render(song, tmp_path / "runs", **groups)
    assert video.is_file() and states["assemble"] == "Completed", states
    records = sorted((tmp_path / "runs" / ".cache" / "results").glob("render-v*"))
    clips = [Manifest.model_validate(json.loads(json.loads(r.read_text())["result"])["data"]) for r in records]
    assert clips and {c.info["worker_pid"] for c in clips} == {worker_pid}  # every scene ran on the TLS worker

    stranger = make_certificates(tmp_path_factory.mktemp("another-ca"))  # a client certificate of another CA
    with pytest.raises(OSError):
        Client(address, security=Security(tls_ca_file=str(certificates / "ca.pem"),
                                          tls_client_cert=str(stranger / "client.pem"),
                                          tls_client_key=str(stranger / "client.key")), timeout=10)  # fmt: skip
    with pytest.raises(ssl.SSLError, match="CERTIFICATE_REQUIRED"):
        talk_without_a_certificate(address, certificates / "ca.pem")
    with pytest.raises(OSError):
        Client(address.replace("tls://", "tcp://"), timeout=10)


def talk_without_a_certificate(address: str, ca: Path) -> bytes:
    """Open TLS to `address` trusting `ca` but showing no certificate, and read the server's first word.

    Nothing is sent: under TLS 1.3 the server checks the client's certificate after the client's
    handshake is done, then sends its alert and closes. Data sent meanwhile arrives at a closed
    socket, whose reset could reach the client before the alert (an EOF instead of the reason).
    """
    context = ssl.create_default_context(cafile=str(ca))
    context.check_hostname = False
    host, port = address.removeprefix("tls://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as raw, context.wrap_socket(raw) as tls:
        return tls.recv(16)


@case("`render.dask_address tls://...` on a machine without the client's certificate",
      "exit 2 before any work, naming the Dask settings to set")  # fmt: skip
def test_a_tls_address_without_a_certificate_fails_before_any_work(tmp_path, music, prefect_server):
    song = tmp_path / "celtic_6s.wav"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-ss", "20", "-t", "6", "-i", str(music / "celtic.ogg"), str(song)],
                   check=True)  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_DISTRIBUTED__COMM__TLS")}
    env["DASK_CONFIG"] = str(tmp_path / "no-dask-config")  # no certificates in a config file either
    proc = subprocess.run(
        [sys.executable, "-m", "soundsight.flows.cli", "render", str(song), "--output.runs_dir", str(tmp_path / "runs"),
         "--render.backend", "wan", "--render.dask_address", f"tls://127.0.0.1:{free_port()}"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=300,
    )  # fmt: skip
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert proc.returncode == 2 and len(errors) == 1, proc.stderr
    assert (
        "DASK_DISTRIBUTED__COMM__TLS__CA_FILE" in errors[0] and "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT" in errors[0]
    )


@case("a GPU host without dask-cuda renders with a local cluster",
      "its scheduler, workers and dashboards listen on 127.0.0.1 only")  # fmt: skip
def test_a_local_gpu_cluster_listens_on_this_machine_only():
    import psutil
    from distributed import Client

    from soundsight.models.render import gpu_pool

    def listening() -> set[tuple[int, str, int]]:
        """(pid, address, port) of every listening socket of this process and its children."""
        me = psutil.Process()
        return {(p.pid, c.laddr.ip, c.laddr.port) for p in [me, *me.children(recursive=True)]
                for c in p.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN}  # fmt: skip

    before = listening()  # the session's own servers, started elsewhere
    cluster = gpu_pool._gpu_spec_cluster(["0"], 1, None)  # the layout a GPU host without dask-cuda gets
    try:
        with Client(cluster) as client:
            client.wait_for_workers(1, timeout=60)
            opened = listening() - before
    finally:
        cluster.close()
    assert opened and {ip for _, ip, _ in opened} <= {"127.0.0.1", "::1"}, opened


def test_compose_publishes_no_unauthenticated_port_beyond_the_host():
    import yaml

    services = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())["services"]
    for name in ("dask-scheduler", "media"):
        for port in services[name]["ports"]:
            assert port.startswith("${") and ":-127.0.0.1}:" in port, (name, port)  # bound to 127.0.0.1 by default
    assert "ports" not in services["gpu-worker"] and "8786" not in " ".join(services["dask-scheduler"]["ports"])


def test_the_multi_host_recipe_uses_tls():
    for doc in ("docs/production.md", "docs/video.md"):
        text = (ROOT / doc).read_text()
        assert "tcp://head" not in text.lower(), doc
        assert "tls://head:8786" in text.lower() and "scripts/make_dask_certificates.sh" in text, doc
