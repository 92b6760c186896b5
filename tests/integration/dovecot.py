"""A private Dovecot IMAP server for the integration tests.

Each test session starts its own ``dovecot -F -c <conf>`` on 127.0.0.1 and a free port, with its own
``base_dir``, ``state_dir``, log, maildirs and a one-line passwd file, all in a temporary folder
that is removed afterwards. Nothing is shared with a system Dovecot (its service, port 143/993,
``/run/dovecot`` or ``/etc/dovecot``), so the tests do not care whether one is installed or running.

The admin helpers (append, flags, create/delete) use the standard library's :mod:`imaplib`, not
aioimaplib, so the reader under test is checked against an independent client. They block: call
them through :func:`asyncio.to_thread` from async tests.
"""

from __future__ import annotations

import contextlib
import getpass
import grp
import imaplib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

USERNAME = "replies"
PASSWORD = "imap-test-pw-7f3a9c"  # distinctive, so tests can look for it in the logs

_APPENDUID = re.compile(rb"\[APPENDUID (\d+) (\d+)\]")
_UIDVALIDITY = re.compile(rb"UIDVALIDITY (\d+)")
_FLAGS = re.compile(rb"UID (\d+) FLAGS \(([^)]*)\)|FLAGS \(([^)]*)\) UID (\d+)")


# Unix listeners the packaged defaults give to the "dovecot" group, which a non-root master cannot chown to.
_GROUP_LISTENERS = (
    ("stats", "stats-writer"),
    ("imap-hibernate", "imap-hibernate"),
    ("dict", "dict"),
    ("dict-async", "dict-async"),
)


def find_dovecot() -> str | None:
    """The dovecot binary (it lives in /usr/sbin, which a non-root PATH may lack), if installed."""
    found = shutil.which("dovecot")
    if found:
        return found
    return "/usr/sbin/dovecot" if os.access("/usr/sbin/dovecot", os.X_OK) else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


class DovecotError(RuntimeError):
    pass


@dataclass
class Dovecot:
    """``start()`` it, use it, ``stop()`` it. One user, :data:`USERNAME` / :data:`PASSWORD`."""

    binary: str
    host: str = "127.0.0.1"
    port: int = 0
    # With a certificate (PEM, chain first) and its key, Dovecot also listens with implicit TLS
    # (IMAPS) on ``tls_port``.
    tls_cert_pem: bytes | None = None
    tls_key_pem: bytes | None = None
    tls_ca_pem: bytes | None = None  # the CA clients should trust; kept here for the tests
    tls_port: int = 0
    username: str = USERNAME
    password: str = PASSWORD
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="notifier-dovecot-")))
    _process: subprocess.Popen[bytes] | None = None
    _output: IO[bytes] | None = None
    _mail_uid: int = 0
    _mail_gid: int = 0
    _service_user: str | None = None  # None: started as root, services run as Dovecot's own users

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self, *, within: float = 30.0, attempts: int = 3) -> None:
        """Start and wait until the port accepts connections. The free port is picked here; if
        another process takes it first, the next attempt picks another."""
        self._prepare()
        for attempt in range(1, attempts + 1):
            self.port = _free_port()
            self.tls_port = _free_port() if self.tls_cert_pem else 0
            self._write_config()
            if self._launch(within):
                return
            self._terminate()
            if attempt == attempts:
                error = DovecotError(f"dovecot did not start on {self.host}:{self.port}:\n{self.log_tail()}")
                self.stop()
                raise error

    def stop(self) -> None:
        self._terminate()
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        text = ""
        for name in ("dovecot.out", "dovecot.log"):
            path = self.root / name
            if path.exists():
                text += path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def _prepare(self) -> None:
        if os.geteuid() == 0:
            # Dovecot refuses mail access as root; mail belongs to "nobody", and its path must be
            # reachable for it.
            user = pwd.getpwnam("nobody")
            self._mail_uid, self._mail_gid = user.pw_uid, user.pw_gid
            self._service_user = None
        else:
            self._mail_uid, self._mail_gid = os.geteuid(), os.getegid()
            self._service_user = getpass.getuser()
        self.root.chmod(0o755)
        for name in ("mail", "home"):
            folder = self.root / name
            folder.mkdir(exist_ok=True)
            os.chown(folder, self._mail_uid, self._mail_gid)
        (self.root / "passwd").write_text(f"{self.username}:{{PLAIN}}{self.password}\n")
        (self.root / "passwd").chmod(0o644)
        if self.tls_cert_pem is not None and self.tls_key_pem is not None:
            (self.root / "cert.pem").write_bytes(self.tls_cert_pem)
            (self.root / "key.pem").write_bytes(self.tls_key_pem)

    def _write_config(self) -> None:
        root = self.root
        users, chroots, anvil_chroot = "", "", ""
        if self._service_user is not None:
            # Without root Dovecot can neither switch users nor chroot its login processes.
            name = self._service_user
            users = f"default_login_user = {name}\ndefault_internal_user = {name}\n"
            chroots = "".join(
                f"service {service} {{\n  unix_listener {listener} {{\n    group =\n  }}\n}}\n"
                for service, listener in _GROUP_LISTENERS
            )
            anvil_chroot = "  chroot =\n"
        if self.tls_port:
            tls = f"ssl = yes\nssl_cert = <{root}/cert.pem\nssl_key = <{root}/key.pem\n"
        else:
            tls = "ssl = no\n"
        group = grp.getgrgid(self._mail_gid).gr_name
        (root / "dovecot.conf").write_text(
            f"""# Written by tests/integration/dovecot.py: a private, loopback-only test server.
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = {self.host}
{tls}disable_plaintext_auth = no
auth_mechanisms = plain login
# Tests try wrong passwords: answer failed logins at once, without the growing per-IP penalty that
# would slow every later login of the session (mode 0 on anvil-auth-penalty switches it off).
auth_failure_delay = 0
mail_location = maildir:{root}/mail/%n
mail_uid = {self._mail_uid}
mail_gid = {self._mail_gid}
mail_privileged_group = {group}
first_valid_uid = {self._mail_uid}
first_valid_gid = {self._mail_gid}
{users}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={self._mail_uid} gid={self._mail_gid} home={root}/home/%n
}}
namespace inbox {{
  inbox = yes
}}
service imap-login {{
  inet_listener imap {{
    address = {self.host}
    port = {self.port}
  }}
  inet_listener imaps {{
    address = {self.host}
    port = {self.tls_port}
    ssl = yes
  }}
{"  chroot =" if self._service_user else ""}
}}
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
{anvil_chroot}}}
{chroots}"""
        )

    def _launch(self, within: float) -> bool:
        self._output = (self.root / "dovecot.out").open("ab")
        self._process = subprocess.Popen(
            [self.binary, "-F", "-c", str(self.root / "dovecot.conf")],
            stdin=subprocess.DEVNULL,
            stdout=self._output,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            if _accepts(self.port) and (not self.tls_port or _accepts(self.tls_port)):
                return True
            time.sleep(0.05)
        return False

    def _terminate(self) -> None:
        if self._process is not None:
            if self._process.poll() is None:
                self._process.terminate()
                try:
                    self._process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait(timeout=15)
            self._process = None
        if self._output is not None:
            self._output.close()
            self._output = None

    # --- admin helpers (blocking; an independent client) ----------------------------------------

    @contextlib.contextmanager
    def client(self, *, password: str | None = None) -> Iterator[imaplib.IMAP4]:
        imap = imaplib.IMAP4(self.host, self.port, timeout=30)
        try:
            imap.login(self.username, self.password if password is None else password)
            yield imap
        finally:
            with contextlib.suppress(imaplib.IMAP4.error, OSError):
                imap.logout()

    def create(self, mailbox: str) -> None:
        with self.client() as imap:
            _ok(imap.create(_q(mailbox)), "CREATE")

    def delete(self, mailbox: str) -> None:
        with self.client() as imap:
            _ok(imap.delete(_q(mailbox)), "DELETE")

    def append(self, mailbox: str, raw: bytes, *, flags: str = "") -> int:
        """Put a message in; its UID (Dovecot answers APPENDUID)."""
        with self.client() as imap:
            typ, data = imap.append(_q(mailbox), f"({flags})" if flags else None, None, raw)
            _ok((typ, data), "APPEND")
            match = _APPENDUID.search(data[0] or b"")
            if match is None:
                raise DovecotError(f"APPEND answered without APPENDUID: {data!r}")
            return int(match.group(2))

    def uidvalidity(self, mailbox: str) -> int:
        with self.client() as imap:
            typ, data = imap.status(_q(mailbox), "(UIDVALIDITY)")
            _ok((typ, data), "STATUS")
            match = _UIDVALIDITY.search(data[0] or b"")
            if match is None:
                raise DovecotError(f"STATUS answered without UIDVALIDITY: {data!r}")
            return int(match.group(1))

    def flags(self, mailbox: str) -> dict[int, set[str]]:
        """Every message's flags, read without changing any (EXAMINE is read-only)."""
        with self.client() as imap:
            _ok(imap.select(_q(mailbox), readonly=True), "EXAMINE")
            typ, data = imap.uid("FETCH", "1:*", "(FLAGS)")
            _ok((typ, data), "FETCH")
            found: dict[int, set[str]] = {}
            for item in data:
                if not isinstance(item, bytes):
                    continue
                match = _FLAGS.search(item)
                if match is None:
                    continue
                uid = match.group(1) or match.group(4)
                flags = match.group(2) if match.group(2) is not None else match.group(3)
                found[int(uid)] = set(flags.decode().split())
            return found

    def set_seen(self, mailbox: str, uids: Sequence[int], *, seen: bool) -> None:
        """What staff do when they read or mark a message unread."""
        with self.client() as imap:
            _ok(imap.select(_q(mailbox)), "SELECT")
            change = "+FLAGS" if seen else "-FLAGS"
            _ok(imap.uid("STORE", ",".join(map(str, uids)), change, r"(\Seen)"), "STORE")


def _q(mailbox: str) -> str:
    return '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _ok(answer: tuple[str, list[Any]], what: str) -> None:
    typ, data = answer
    if typ != "OK":
        raise DovecotError(f"{what} failed: {typ} {data!r}")
