"""Probes run in the sandbox: a probe process per group of an assignment's probes, again
alone after a failure, each followed on its channel (assignments.sandbox, assignments.runner)
until it hands back its observations, stops or runs past its time."""
import os
import queue
import shutil
import time

from assignments import sandbox
from assignments.observations import Observation, check_npz
from assignments.tests_files import probe_source
from utils.errors import one_line


def probe_slots(n):
    """A pool of numbers for the probe processes running at once (each gets a user of its
    own): a probe process takes one with get() and gives it back with put()."""
    slots = queue.Queue()
    for slot in range(max(1, n)):
        slots.put(slot)
    return slots


class Job:
    """One student's assignment: its copied folder and the probes to run on it."""

    def __init__(self, assignment, tests_file, submission_file, folder, box, slots, timeout,
                 record_calls=False):
        self.assignment, self.tests_file, self.submission_file = assignment, tests_file, \
            submission_file
        self.folder, self.box, self.slots, self.timeout = folder, box, slots, timeout
        self.record_calls = record_calls
        with open(tests_file) as f:
            self.text = f.read()


def _run_once(job, probes, slot):
    """One probe process for `probes` (name -> timeout), in order.

    (observations of the probes it finished, the probe it was in when it stopped or None,
    how it stopped, whether that probe was the first it started, output)."""
    zygote = job.box.zygote()
    scratch = zygote.new_job() if zygote else sandbox.new_scratch()
    try:
        sandbox.prepare_lib(scratch, probe_source(job.text, list(probes), job.tests_file),
                            sandbox.utils_folder())
        shutil.copytree(job.folder, os.path.join(scratch, 'submission'))
        sandbox._readable(os.path.join(scratch, 'submission'))
        output_file = os.path.join(scratch, 'output.txt')
        cpu = sum(job.timeout or t for t in probes.values()) * 2 + 60
        request = {'probes': list(probes), 'submission_file': job.submission_file,
                   'record_calls': job.record_calls}
        if zygote:
            process, channel = job.box.start_forked(request, scratch, slot, cpu)
        else:
            process, channel = job.box.start(request, scratch, slot, cpu, output_file)
            sandbox.track(process, True)
        try:
            return _follow(process, channel, probes, job.timeout) + (
                sandbox.tail(output_file),)
        finally:
            sandbox.kill_tree(process)
            process.wait()
            sandbox.track(process, False)
            os.close(channel)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


START_LIMIT = 120  # seconds for the probe process to import MXNet and the student's module


def _follow(process, channel, probes, timeout):
    reader = sandbox.ChannelReader()
    done, current, started, first = {}, None, 0, False
    deadline = sandbox.now() + START_LIMIT
    began = sandbox.now()
    handled = 0
    while True:
        left = deadline - sandbox.now()
        if left <= 0:
            return done, current, 'timeout', first
        if sandbox.wait_readable(channel, min(left, 0.5)):
            try:
                chunk = os.read(channel, 2**20)
            except BlockingIOError:
                chunk = None
            if not chunk:  # a FIFO reads empty until its writer opens it, and at the end
                if process.poll() is not None:
                    return done, current, _ended(process), first
                time.sleep(0.02)
                chunk = b''
            reader.feed(chunk)
            if reader.overflow:
                return done, current, 'channel', first
        for header, payload in reader.records[handled:]:
            handled += 1
            event = header.get('event')
            if event == 'ready':  # importing the student's module: a probe's time at most
                deadline = sandbox.now() + (timeout or max(probes.values()))
            elif event == 'import_failed':
                status = str(header.get('status'))
                status = status if status in ('not_implemented', 'import_error') \
                    else 'import_error'
                for name in probes:
                    done[name] = Observation(status, str(header.get('message', ''))[:300])
                return done, None, 'finished', False
            elif event == 'start' and header.get('probe') in probes and current is None:
                current = header['probe']
                started += 1
                first = started == 1
                began = sandbox.now()
                deadline = began + (timeout or probes[current])
            elif event == 'done' and header.get('probe') == current:
                status = header.get('status')
                message = str(header.get('message', ''))[:300]
                seconds = round(sandbox.now() - began, 2)
                calls = header.get('calls') or []
                if status == 'ok':
                    try:
                        check_npz(payload)
                        done[current] = Observation('ok', payload=payload,
                                                    seconds=seconds, calls=calls)
                    except Exception as err:
                        done[current] = Observation(
                            'error', 'unreadable observations (%s)'
                            % one_line(err, 200, named=True), seconds=seconds)
                else:
                    done[current] = Observation(
                        status if status in ('not_implemented', 'error') else 'error',
                        message, seconds=seconds)
                current = None
                deadline = sandbox.now() + START_LIMIT
                if len(done) == len(probes):
                    return done, None, 'finished', False
        if process.poll() is not None and not sandbox.wait_readable(channel, 0):
            return done, current, _ended(process), first


def _ended(process):
    return 'exit %s' % process.returncode


def _failure(how, limit):
    """(status, reason) of a probe process that stopped during a probe."""
    import signal
    if how == 'timeout':
        return 'timeout', 'stopped after the time limit of %g s' % limit
    if how == 'channel':
        return 'not_allowed', 'handed back more than %d MB' % (sandbox.CHANNEL_LIMIT // 2**20)
    code = int(how.split()[1]) if how.startswith('exit ') and how[5:].lstrip('-').isdigit() \
        else None
    if code == -signal.SIGXFSZ:
        return 'not_allowed', 'wrote or printed more than %d MB' % (
            sandbox.FILE_LIMIT // 2**20)
    if code == -signal.SIGXCPU:
        return 'timeout', 'used up its CPU time'
    return 'crashed', 'the probe process ended during this test (exit status %s)' % code


def run_probes(job, probes):
    """Observations of every probe (name -> timeout) of one job.

    One process runs them all, in order. When it stops during a probe (a crash, a time
    limit, too much output), that probe gets the failure only if it was the first the
    process ran; otherwise it runs again alone, as something an earlier probe left behind
    may have caused it. The probes after it run in a new process."""
    results, pending, alone = {}, list(probes), None
    while pending:
        batch = [alone] if alone else pending
        slot = job.slots.get()
        try:
            done, current, how, first, output = _run_once(
                job, {name: probes[name] for name in batch}, slot)
        finally:
            job.slots.put(slot)
        for name, observation in done.items():
            observation.output = output
            results[name] = observation
        if current is not None:
            if first or alone:
                status, reason = _failure(how, job.timeout or probes[current])
                results[current] = Observation(status, reason, output=output)
                alone = None
            else:
                alone = current
        elif how != 'finished':  # ended between probes, or before the first
            status, reason = _failure(how, job.timeout or max(probes.values()))
            if how != 'timeout':
                reason = 'the probe process ended before this test ran (exit status %s)' % (
                    how.split()[-1])
            for name in batch:
                if name not in results:
                    results[name] = Observation(status, reason, output=output)
        pending = [name for name in pending if name not in results]
        if alone and alone not in pending:
            alone = None
    return results
