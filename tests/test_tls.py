"""Delivery over HTTPS, as production runs it: the strict fake serves TLS with a certificate made at run time.

The client trusts the test CA through botocore's standard ``AWS_CA_BUNDLE`` (never by turning verification
off), and every test checks on the server side that the TLS handshakes really happened.

- in-process: 1,000 records over HTTPS arrive exactly; an untrusted certificate is reported on stderr as a
  certificate/SSL problem and counted at close, without a hang;
- a real ``python`` parent that logs over HTTPS while slow requests are in flight and forks children (os.fork
  ending in sys.exit, and a multiprocessing "fork" child): every child exits within a deadline (an OpenSSL
  lock inherited from a parent thread would hang it) and every record of every process lands exactly once in
  its own ``{pid}`` stream;
- a real ``python`` that logs 2,000 records over HTTPS and just ends (no close): all delivered.
"""
from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time

import pytest

from realprog import running, subprocess_env, wait_until
from strict_fake import StrictFake, delay
from tls import make_certificates, server_context


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certificates(str(tmp_path_factory.mktemp("tls")))


@pytest.fixture
def tls_fake(certs):
    with StrictFake(tls=server_context(certs)) as server:
        yield server


def messages(fake: StrictFake, group: str, stream: str):
    return [message for _ts, message in fake.events(group, stream)]


# -- in-process ---------------------------------------------------------------------------------------------
def test_in_process_delivery_over_https(tls_fake, certs, make_handler, logger, monkeypatch):
    monkeypatch.setenv("AWS_CA_BUNDLE", certs.ca_file)
    handler = make_handler(tls_fake.endpoint_url, log_group="tls-inproc", log_stream="s")
    logger.addHandler(handler)
    sent = [f"record {i}" for i in range(1000)]
    for message in sent:
        logger.info(message)
    assert handler.flush(10) is True, handler.stats()
    assert messages(tls_fake, "tls-inproc", "s") == sent
    assert tls_fake.endpoint_url.startswith("https://") and tls_fake.tls_handshakes >= 1
    assert tls_fake.tls_failures == 0 and tls_fake.calls["PutLogEvents"] >= 1


def test_untrusted_certificate_is_reported_and_counted(tls_fake, make_handler, logger, monkeypatch, capsys):
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)  # botocore's default bundle does not know the test CA
    handler = make_handler(tls_fake.endpoint_url, log_group="tls-untrusted", log_stream="s", shutdown_timeout=1)
    logger.addHandler(handler)
    for i in range(10):
        logger.info("record %d", i)
    assert wait_until(lambda: tls_fake.tls_failures >= 1, 10), "the client never tried a TLS handshake"
    started = time.monotonic()
    handler.close()
    took = time.monotonic() - started
    err = capsys.readouterr().err
    stats = handler.stats()
    assert took < 5, f"close took {took:.1f} s\n{err}"
    assert (stats["emitted"], stats["sent"], stats["dropped"]) == (10, 0, 10), stats
    assert tls_fake.tls_handshakes == 0 and "tls-untrusted" not in tls_fake.groups()
    assert re.search(r"certificate|ssl", err, re.I), f"stderr names no certificate/SSL problem:\n{err}"


# -- real processes -----------------------------------------------------------------------------------------
def run_python(code: str, fake: StrictFake, certs, *args: object, timeout: float = 60):
    """Run ``python -c code args...`` trusting the test CA; returns (returncode, stdout, stderr)."""
    env = subprocess_env(AWS_CA_BUNDLE=certs.ca_file, PYTHONFAULTHANDLER="1")
    with running([sys.executable, "-c", code, fake.endpoint_url, *map(str, args)], env=env) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"python did not end within {timeout} s")
    return proc.returncode, out, err


FORKING_PARENT = r"""
import faulthandler, logging, multiprocessing, os, signal, sys, time
from cwlhandler import CloudWatchLogsHandler

url, group, forks, k, deadline = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
faulthandler.register(signal.SIGUSR1, all_threads=True)  # inherited: a hung child can be made to show its stacks
handler = CloudWatchLogsHandler(group, "{pid}", endpoint_url=url, region_name="us-east-1", flush_interval=0.01,
                                shutdown_timeout=5, max_concurrency=2)
log = logging.getLogger("forking")
log.addHandler(handler)
log.setLevel(logging.INFO)
count = 0

def parent_logs(n):
    global count
    for _ in range(n):
        log.info("parent %d", count)
        count += 1

def child_logs(kind):
    for i in range(k):
        log.info("child %d %s %d", os.getpid(), kind, i)

children = {}
parent_logs(1)  # the first record: the pipeline (and, before the fix, its client) starts now
for _ in range(forks):
    pid = os.fork()
    if pid == 0:
        child_logs("fork")
        sys.exit(0)
    children[pid] = "fork"
    parent_logs(int(os.environ.get("GAP", "20")))
child = multiprocessing.get_context("fork").Process(target=child_logs, args=("mp",))
child.start()
children[child.pid] = "mp"
parent_logs(20)
end = time.monotonic() + deadline
while children and time.monotonic() < end:
    for pid in list(children):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            print("exited", pid, children.pop(pid), os.waitstatus_to_exitcode(status), flush=True)
    time.sleep(0.01)
for pid in children:
    print("hung", pid, children[pid], flush=True)
    os.kill(pid, signal.SIGUSR1)
time.sleep(0.5 if children else 0)  # let faulthandler write the hung children's stacks
for pid in children:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
print("parent", os.getpid(), count, flush=True)
"""


def test_fork_while_requests_are_in_flight_over_https(tls_fake, certs):
    forks, k = int(os.environ.get("FORKS", "5")), 200
    tls_fake.set_outage(delay(0.02))  # every request is slow: the parent's requests overlap each fork
    code, out, err = run_python(FORKING_PARENT, tls_fake, certs, "tls-fork", forks, k, 10)
    lines = [line.split() for line in out.splitlines()]
    hung = [line[1:3] for line in lines if line[0] == "hung"]
    assert not hung, f"children hung (pid, kind) past the deadline: {hung}\n{err[-6000:]}"
    exits = {int(line[1]): (line[2], int(line[3])) for line in lines if line[0] == "exited"}
    parent = [(int(line[1]), int(line[2])) for line in lines if line[0] == "parent"]
    assert code == 0 and len(exits) == forks + 1 and len(parent) == 1, f"rc={code}\n{out}\n{err[-3000:]}"
    assert all(status == 0 for _kind, status in exits.values()), f"{exits}\n{err[-3000:]}"
    pid, count = parent[0]
    expected = {str(pid): [f"parent {i}" for i in range(count)]}
    expected.update({str(child): [f"child {child} {kind} {i}" for i in range(k)]
                     for child, (kind, _status) in exits.items()})
    got = {stream: sorted(messages(tls_fake, "tls-fork", stream), key=_natural)
           for stream in tls_fake.streams("tls-fork")} if "tls-fork" in tls_fake.groups() else {}
    assert got == {s: sorted(m, key=_natural) for s, m in expected.items()}, (
        f"{ {s: len(m) for s, m in got.items()} } != { {s: len(m) for s, m in expected.items()} }\n{err[-3000:]}")
    assert tls_fake.tls_handshakes >= forks + 2, tls_fake.tls_handshakes  # each process made its own connections


def _natural(message: str):
    return [int(part) if part.isdigit() else part for part in message.split()]


EXITING = r"""
import logging, os, sys
from cwlhandler import CloudWatchLogsHandler

handler = CloudWatchLogsHandler(sys.argv[2], "{pid}", endpoint_url=sys.argv[1], region_name="us-east-1",
                                shutdown_timeout=10)
log = logging.getLogger("exiting")
log.addHandler(handler)
log.setLevel(logging.INFO)
for i in range(int(sys.argv[3])):
    log.info("record %d", i)
print(os.getpid(), flush=True)
"""


def test_interpreter_exit_delivers_over_https(tls_fake, certs):
    code, out, err = run_python(EXITING, tls_fake, certs, "tls-exit", 2000)
    assert code == 0, f"rc={code}\n{err[-3000:]}"
    pid = out.split()[0]
    got = {s: messages(tls_fake, "tls-exit", s) for s in tls_fake.streams("tls-exit")} \
        if "tls-exit" in tls_fake.groups() else {}
    assert got == {pid: [f"record {i}" for i in range(2000)]}, f"{ {s: len(m) for s, m in got.items()} }\n{err[-3000:]}"
    assert tls_fake.tls_handshakes >= 1 and tls_fake.tls_failures == 0
