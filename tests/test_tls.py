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

import re
import subprocess
import sys
import time
from typing import Dict, List

import pytest

from helpers import running, subprocess_env, wait_until
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
    """Run ``python -c code URL args...`` trusting the test CA; returns (returncode, stdout, stderr)."""
    env = subprocess_env(AWS_CA_BUNDLE=certs.ca_file)
    with running([sys.executable, "-c", code, fake.endpoint_url, *map(str, args)], env=env) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"python did not end within {timeout} s")
    return proc.returncode, out, err


def read_back(fake: StrictFake, group: str) -> Dict[str, List[str]]:
    """{stream: sorted messages} of a group ({} when it was never created)."""
    if group not in fake.groups():
        return {}
    return {stream: sorted(messages(fake, group, stream)) for stream in fake.streams(group)}


FORKING_PARENT = r"""
import faulthandler, logging, multiprocessing, os, signal, sys, time
from cwlhandler import CloudWatchLogsHandler

url, group, early, late, k, deadline = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:7])
faulthandler.register(signal.SIGUSR1, all_threads=True)  # inherited: a hung child can be made to show its stacks
handler = CloudWatchLogsHandler(group, "{pid}", endpoint_url=url, region_name="us-east-1", flush_interval=0.01,
                                shutdown_timeout=3, max_concurrency=2)
log = logging.getLogger("forking")
log.addHandler(handler)
log.setLevel(logging.INFO)
count = 0

def parent_logs():
    global count
    log.info("parent %d", count)
    count += 1

def while_a_request_is_in_flight():
    # Log until one more PutLogEvents was answered: the next one (a new connection and TLS handshake,
    # the server closes each) is then on its way.
    calls, end = handler.stats()["api_calls"], time.monotonic() + 10
    while handler.stats()["api_calls"] == calls and time.monotonic() < end:
        parent_logs()
        time.sleep(0.001)
    parent_logs()

def child_logs(kind):
    for i in range(k):
        log.info("child %d %s %d", os.getpid(), kind, i)

children = {}
parent_logs()  # the first record: before the fix the flusher thread starts making the client (SSL contexts) now
for n in range(early + late):
    if n >= early:
        while_a_request_is_in_flight()
    pid = os.fork()
    if pid == 0:
        child_logs("fork")
        sys.exit(0)
    children[pid] = "fork"
while_a_request_is_in_flight()
child = multiprocessing.get_context("fork").Process(target=child_logs, args=("mp",))
child.start()
children[child.pid] = "mp"
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
time.sleep(0.5 if children else 0)  # time for faulthandler to write the hung children's stacks
for pid in children:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
print("parent", os.getpid(), count, flush=True)
"""


def test_fork_while_requests_are_in_flight_over_https(certs):
    early, late, k = 6, 2, 200  # forks right after the first record, forks while a request is in flight
    with StrictFake(tls=server_context(certs), keep_alive=False) as fake:
        fake.set_outage(delay(0.02))  # every request is slow: the parent's requests overlap the forks
        code, out, err = run_python(FORKING_PARENT, fake, certs, "tls-fork", early, late, k, 10)
        got = read_back(fake, "tls-fork")
        calls, handshakes, failures = sum(fake.calls.values()), fake.tls_handshakes, fake.tls_failures
    lines = [line.split() for line in out.splitlines()]
    hung = [(int(line[1]), line[2]) for line in lines if line[0] == "hung"]
    assert not hung, f"children (pid, kind) still running {10} s after the last fork: {hung}\n{err[-8000:]}"
    exits = {int(line[1]): (line[2], int(line[3])) for line in lines if line[0] == "exited"}
    parent = [(int(line[1]), int(line[2])) for line in lines if line[0] == "parent"]
    assert code == 0 and len(exits) == early + late + 1 and len(parent) == 1, f"rc={code}\n{out}\n{err[-3000:]}"
    assert all(status == 0 for _kind, status in exits.values()), f"{exits}\n{err[-3000:]}"
    pid, count = parent[0]
    expected = {str(pid): sorted(f"parent {i}" for i in range(count))}
    expected.update({str(child): sorted(f"child {child} {kind} {i}" for i in range(k))
                     for child, (kind, _status) in exits.items()})
    assert got == expected, (f"events per stream { {s: len(m) for s, m in got.items()} }, expected "
                             f"{ {s: len(m) for s, m in expected.items()} }\n{err[-3000:]}")
    # Every request came on its own connection, after its own TLS handshake.
    assert handshakes >= calls > len(expected) and failures == 0, (handshakes, calls, failures)


EXITING = r"""
import logging, os, sys
from cwlhandler import CloudWatchLogsHandler

handler = CloudWatchLogsHandler(sys.argv[2], "{pid}", endpoint_url=sys.argv[1], region_name="us-east-1",
                                max_batch_count=100, shutdown_timeout=10)
log = logging.getLogger("exiting")
log.addHandler(handler)
log.setLevel(logging.INFO)
for i in range(int(sys.argv[3])):
    log.info("record %d", i)
print(os.getpid(), flush=True)
"""


def test_interpreter_exit_delivers_over_https(certs):
    with StrictFake(tls=server_context(certs), keep_alive=False) as fake:  # a handshake per request, most at exit
        code, out, err = run_python(EXITING, fake, certs, "tls-exit", 2000)
        got = read_back(fake, "tls-exit")
        calls, handshakes, failures = fake.calls["PutLogEvents"], fake.tls_handshakes, fake.tls_failures
    assert code == 0 and out.split(), f"rc={code}\n{err[-3000:]}"
    expected = {out.split()[0]: sorted(f"record {i}" for i in range(2000))}
    assert got == expected, f"{ {s: len(m) for s, m in got.items()} }\n{err[-3000:]}"
    assert handshakes >= calls >= 20 and failures == 0, (handshakes, calls, failures)
