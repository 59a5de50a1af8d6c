"""A throwaway local PACS: start Orthanc with the DICOMweb plugin in a temporary folder.

Used by the tests and ``bench/dicomweb.py``, and by anyone who wants a local DICOMweb
server to try ``hidim pacs`` against (or to stage a research PACS)::

    from hidim.ingest.orthanc import start_orthanc

    with start_orthanc("/tmp/pacs") as server:      # free port, storage under /tmp/pacs
        server.upload("CT_small.dcm")               # Orthanc REST: POST /instances
        print(server.dicomweb_url)                  # http://127.0.0.1:<port>/dicom-web
    # the process is stopped here; /tmp/pacs keeps the storage, the config and orthanc.log

Needs the ``Orthanc`` binary and its DICOMweb plugin (Debian: ``apt-get install orthanc
orthanc-dicomweb``); :func:`find_orthanc` says where they are or why not. The server
listens on 127.0.0.1 only, without authentication and without a DICOM (DIMSE) port.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from hidim.errors import IngestError

__all__ = ["OrthancServer", "find_orthanc", "start_orthanc", "free_port"]

_PLUGIN_GLOBS = (
    "/usr/lib/orthanc/libOrthancDicomWeb.so*",
    "/usr/share/orthanc/plugins/libOrthancDicomWeb.so*",
    "/usr/local/share/orthanc/plugins/libOrthancDicomWeb.so*",
    "/usr/local/lib/orthanc/libOrthancDicomWeb.so*",
)


def find_orthanc(
    executable: str | os.PathLike[str] | None = None,
    plugin: str | os.PathLike[str] | None = None,
) -> tuple[Path, Path]:
    """Locate the Orthanc binary and the DICOMweb plugin.

    Args:
        executable: Path of ``Orthanc``; default: ``Orthanc`` on PATH, then ``/usr/sbin``.
        plugin: Path of ``libOrthancDicomWeb.so``; default: the Debian/Ubuntu locations.

    Returns:
        ``(executable, plugin)``.

    Raises:
        IngestError: Either is missing (the message says how to install it).
    """
    exe = Path(executable) if executable else None
    if exe is None:
        found = shutil.which("Orthanc") or (
            "/usr/sbin/Orthanc" if os.access("/usr/sbin/Orthanc", os.X_OK) else None
        )
        exe = Path(found) if found else None
    if exe is None or not exe.is_file():
        raise IngestError(
            f"expected the Orthanc executable, found none ({executable or 'Orthanc on PATH, /usr/sbin'}); "
            "install it (Debian/Ubuntu: apt-get install orthanc orthanc-dicomweb) or pass its path"
        )
    lib = Path(plugin) if plugin else None
    if lib is None:
        candidates = sorted(p for pattern in _PLUGIN_GLOBS for p in glob.glob(pattern))
        lib = Path(candidates[0]) if candidates else None
    if lib is None or not lib.is_file():
        raise IngestError(
            f"expected the Orthanc DICOMweb plugin, found none ({plugin or ', '.join(_PLUGIN_GLOBS)}); "
            "install it (Debian/Ubuntu: apt-get install orthanc-dicomweb) or pass its path"
        )
    return exe, lib


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True, slots=True)
class OrthancServer:
    """A running Orthanc started by :func:`start_orthanc`.

    Attributes:
        url: REST root, e.g. ``http://127.0.0.1:8042``.
        dicomweb_url: DICOMweb root to give hidim, ``<url>/dicom-web``.
        workdir: Folder with ``orthanc.json``, ``orthanc.log`` and the storage.
        process: The server process.
        auth: ``(user, password)`` the REST helpers use when the server requires HTTP Basic.
    """

    url: str
    dicomweb_url: str
    workdir: Path
    process: subprocess.Popen[bytes]
    auth: tuple[str, str] | None = None

    @property
    def log_path(self) -> Path:
        """The server's log file (look here when a request fails)."""
        return self.workdir / "orthanc.log"

    def log_tail(self, n_chars: int = 4000) -> str:
        """The end of the server log (for error messages)."""
        return _tail(self.log_path, n_chars)

    def upload(self, path: str | os.PathLike[str]) -> str:
        """Store one DICOM file through Orthanc's REST API; returns its Orthanc instance id."""
        response = requests.post(
            f"{self.url}/instances", data=Path(path).read_bytes(), auth=self.auth, timeout=60
        )
        if response.status_code != 200:
            raise IngestError(
                f"expected Orthanc to store {Path(path).name}, got HTTP {response.status_code}: "
                f"{response.text[:300]}; see {self.log_path}"
            )
        return str(response.json()["ID"])

    def instance_ids(self) -> list[str]:
        """Orthanc ids of every stored instance."""
        response = requests.get(f"{self.url}/instances", auth=self.auth, timeout=30)
        response.raise_for_status()
        return [str(i) for i in response.json()]

    def delete_instance(self, orthanc_id: str) -> None:
        """Delete one instance (by Orthanc id)."""
        url = f"{self.url}/instances/{orthanc_id}"
        requests.delete(url, auth=self.auth, timeout=30).raise_for_status()

    def clear(self) -> None:
        """Delete every patient (and so every study, series and instance)."""
        response = requests.get(f"{self.url}/patients", auth=self.auth, timeout=30)
        response.raise_for_status()
        for pid in response.json():
            url = f"{self.url}/patients/{pid}"
            requests.delete(url, auth=self.auth, timeout=30).raise_for_status()


def _config(
    workdir: Path, port: int, plugin: Path, users: Mapping[str, str] | None
) -> dict[str, object]:
    return {
        "Name": "hidim-local",
        "StorageDirectory": str(workdir / "storage"),
        "IndexDirectory": str(workdir / "index"),
        "StorageCompression": False,
        "HttpPort": port,
        "HttpServerEnabled": True,
        "RemoteAccessAllowed": True,
        "AuthenticationEnabled": bool(users),
        "RegisteredUsers": dict(users or {}),
        "DicomServerEnabled": False,
        "SaveJobs": False,
        "Plugins": [str(plugin)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False},
    }


def _wait_ready(
    url: str, process: subprocess.Popen[bytes], timeout_s: float, auth: tuple[str, str] | None
) -> str | None:
    """``None`` once ``/system`` answers and the plugin is loaded, else why not."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return f"Orthanc exited with code {process.returncode}"
        try:
            if requests.get(f"{url}/system", auth=auth, timeout=2).status_code == 200:
                plugins = requests.get(f"{url}/plugins", auth=auth, timeout=2).json()
                if "dicom-web" not in plugins:
                    return f"Orthanc started without the DICOMweb plugin (plugins: {plugins})"
                return None
        except requests.RequestException:
            pass
        time.sleep(0.1)
    return f"Orthanc did not answer {url}/system within {timeout_s:.0f} s"


@contextmanager
def start_orthanc(
    workdir: str | os.PathLike[str],
    *,
    port: int | None = None,
    executable: str | os.PathLike[str] | None = None,
    plugin: str | os.PathLike[str] | None = None,
    timeout_s: float = 30.0,
    verbose: bool = False,
    users: Mapping[str, str] | None = None,
) -> Iterator[OrthancServer]:
    """Run Orthanc + DICOMweb on 127.0.0.1 for the duration of a ``with`` block.

    Args:
        workdir: Folder for the config, log, index and storage (created; reused storage
            means the server keeps what an earlier run stored).
        port: HTTP port; default a free one (retried up to 3 times if taken meanwhile).
        executable: ``Orthanc`` binary; see :func:`find_orthanc`.
        plugin: DICOMweb plugin library; see :func:`find_orthanc`.
        timeout_s: Seconds to wait for the server to answer.
        verbose: Verbose server log (``--verbose``) in ``workdir/orthanc.log``.
        users: ``{user: password}`` to require HTTP Basic authentication (default: none).

    Yields:
        The running :class:`OrthancServer`; it is terminated (then killed) on exit.

    Raises:
        IngestError: Orthanc or the plugin is missing, or the server did not start (the
            message carries the end of its log).
    """
    exe, lib = find_orthanc(executable, plugin)
    root = Path(workdir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    why = "not started"
    for _attempt in range(3 if port is None else 1):
        http_port = port if port is not None else free_port()
        config_path = root / "orthanc.json"
        config_path.write_text(
            json.dumps(_config(root, http_port, lib, users), indent=2), encoding="utf-8"
        )
        args = [str(exe), f"--logfile={root / 'orthanc.log'}"]
        if verbose:
            args.append("--verbose")
        args.append(str(config_path))
        process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{http_port}"
        auth = next(iter(users.items())) if users else None
        server = OrthancServer(
            url=url, dicomweb_url=f"{url}/dicom-web", workdir=root, process=process, auth=auth
        )
        why = _wait_ready(url, process, timeout_s, auth) or ""
        if not why:
            try:
                yield server
            finally:
                _stop(process)
            return
        _stop(process)
    raise IngestError(
        f"expected a local Orthanc to start in {root}, but {why}; check the log "
        f"{root / 'orthanc.log'}:\n{_tail(root / 'orthanc.log')}"
    )


def _tail(path: Path, n_chars: int = 2000) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-n_chars:]
    except OSError:
        return "(no log)"


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
