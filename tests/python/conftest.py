"""Fixtures that run the real `sluice` binary for the Python client tests.

The binary comes from $SLUICE_BIN (default: target/debug/sluice, relative to the repository
root). Each broker gets its own temp dir and an ephemeral loopback port; the broker prints
`LISTENING 127.0.0.1:<port>` on stdout when every shard accepts connections.
"""

import os
import pathlib
import signal
import subprocess
import tempfile
import threading
import uuid

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 30
STDERR_TAIL_BYTES = 8192


def sluice_bin():
    path = pathlib.Path(os.environ.get("SLUICE_BIN", REPO_ROOT / "target" / "debug" / "sluice"))
    if not path.is_absolute():
        path = REPO_ROOT / path
    if not path.exists():
        pytest.fail(f"broker binary {path} not found: run `cargo build` or set SLUICE_BIN")
    return path


class Broker:
    """A `sluice serve` child process in its own temp dir."""

    def __init__(self, overrides=None):
        self._tmp = tempfile.TemporaryDirectory(prefix="sluice-pytest-")
        self.root = pathlib.Path(self._tmp.name)
        self.data_dir = self.root / "data"
        self.data_dir.mkdir()
        self.stderr_path = self.root / "broker-stderr.log"
        self.overrides = dict(overrides or {})
        self.proc = None
        self.bootstrap = None
        self._start()

    def _start(self):
        args = [str(sluice_bin()), "serve", "--data-dir", str(self.data_dir),
                "--listen", "127.0.0.1:0", "--cores", "2",
                "--override", "admin.listener=127.0.0.1:0"]
        for key, value in self.overrides.items():
            args += ["--override", f"{key}={value}"]
        stderr = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=stderr)
        stderr.close()
        found = threading.Event()
        address = []

        def drain():
            # Reads the LISTENING line, then keeps draining so the pipe never fills.
            for raw in self.proc.stdout:
                line = raw.decode(errors="replace").strip()
                if line.startswith("LISTENING ") and not found.is_set():
                    address.append(line.split(" ", 1)[1])
                    found.set()
            found.set()

        threading.Thread(target=drain, daemon=True).start()
        if not found.wait(START_TIMEOUT_S) or not address:
            self.kill()
            raise RuntimeError(f"broker printed no LISTENING line within {START_TIMEOUT_S}s\n"
                               + self.stderr_tail())
        self.bootstrap = address[0]

    def stderr_tail(self):
        try:
            data = self.stderr_path.read_bytes()[-STDERR_TAIL_BYTES:]
        except OSError as e:
            return f"<cannot read broker stderr: {e}>"
        return "---- broker stderr tail ----\n" + data.decode(errors="replace")

    def stop(self):
        """SIGTERM and a bounded wait; returns the exit code."""
        if self.proc is None:
            return None
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError("broker did not exit after SIGTERM\n" + self.stderr_tail())
        self.proc = None
        return code

    def kill(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def restart(self):
        code = self.stop()
        assert code == 0, f"broker exited {code} after SIGTERM\n" + self.stderr_tail()
        self._start()

    def close(self):
        self.kill()
        self._tmp.cleanup()


@pytest.fixture(scope="session")
def broker():
    """One broker shared by the session; tests use unique topic names."""
    b = Broker()
    yield b
    b.close()


@pytest.fixture
def start_broker(request):
    """Factory for a private broker with `--override` settings; closed after the test.
    Keyword `message_max_bytes="100"` becomes `--override message.max.bytes=100`."""
    started = []
    request.node.sluice_brokers = started

    def start(**overrides):
        b = Broker({k.replace("_", "."): v for k, v in overrides.items()})
        started.append(b)
        return b

    yield start
    for b in started:
        b.close()


@pytest.fixture
def topic_name():
    return f"py-{uuid.uuid4().hex[:12]}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        brokers = list(getattr(item, "sluice_brokers", []))
        if "broker" in getattr(item, "funcargs", {}):
            brokers.append(item.funcargs["broker"])
        for b in brokers:
            if b.stderr_path.exists():
                report.sections.append((f"broker {b.bootstrap} stderr", b.stderr_tail()))
