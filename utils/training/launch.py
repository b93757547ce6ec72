r"""Start a parameter-server training run on this machine: scheduler, servers and workers.

    python -m utils.training.launch -n 2 [-s 1] -- \
        python -m chapters.train_basics --kvstore dist_sync

Every process gets MXNet's DMLC_* variables on the loopback interface (a free port is picked);
the scheduler and the servers are `python -c "import utils, mxnet"` with DMLC_ROLE=scheduler or
server (importing mxnet in such a role runs it until the workers are done); the workers run the
command after `--` with DMLC_ROLE=worker. Output is forwarded line by line with a prefix
(`[worker 0]`: the launch order; the kvstore assigns `kv.rank` itself). When a process fails,
every process started here is stopped (SIGTERM to its process group, then SIGKILL) and the
launcher exits with that process's status; Ctrl-C stops them all too (status 130).

A command starting with `python` or `python3` runs with this Python (sys.executable), so
`.venv/bin/python -m utils.training.launch -- python -m ...` uses the project's environment.
For several real machines, see docs/several-machines.md.
(`python -m mxnet.tools.launch` does this too but is broken on Python >= 3.9.)
"""
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from ..devices import most_processes, usable_cores
from ..errors import OneLineParser

STOP_GRACE = 5.0      # seconds between SIGTERM and SIGKILL
DRAIN_GRACE = 20.0    # seconds the scheduler and servers get to stop after the workers


def free_port(host='127.0.0.1'):
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def dmlc_env(role, host, port, num_workers, num_servers, interface, base=None):
    env = dict(os.environ if base is None else base)
    env.update(DMLC_ROLE=role, DMLC_PS_ROOT_URI=host, DMLC_PS_ROOT_PORT=str(port),
               DMLC_NUM_WORKER=str(num_workers), DMLC_NUM_SERVER=str(num_servers),
               PYTHONUNBUFFERED='1')
    if interface:
        env['DMLC_INTERFACE'] = interface
    if role != 'worker':
        # The scheduler and servers only move and add up arrays: leave the cores to workers.
        env['OMP_NUM_THREADS'] = '1'
    return env


class Child:
    def __init__(self, name, cmd, env, out):
        self.name = name
        self.finished_at = None
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     start_new_session=True)  # own process group
        self.thread = threading.Thread(target=self._forward, args=(out,), daemon=True)
        self.thread.start()

    def _forward(self, out):
        prefix = '[%s] ' % self.name
        for raw in iter(self.proc.stdout.readline, b''):
            line = raw.decode('utf-8', 'replace').rstrip('\r\n')
            with _PRINT_LOCK:
                out.write(prefix + line + '\n')
                out.flush()
        self.proc.stdout.close()

    def signal(self, sig):
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def alive(self):
        return self.proc.poll() is None


_PRINT_LOCK = threading.Lock()


def exit_status(returncode):
    """A child's status as a shell reports it: 128 + N for a child killed by signal N."""
    return 128 - returncode if returncode < 0 else returncode


def stop_all(children, grace=STOP_GRACE):
    """SIGTERM every process group still running, then SIGKILL what is left after `grace`."""
    for child in children:
        if child.alive():
            child.signal(signal.SIGTERM)
    deadline = time.time() + grace
    for child in children:
        try:
            child.proc.wait(timeout=max(0.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            pass
    for child in children:
        if child.alive():
            child.signal(signal.SIGKILL)
            child.proc.wait()
        else:
            child.signal(signal.SIGKILL)  # grandchildren left in the group
    for child in children:
        child.thread.join(timeout=2)


def parse_args(argv):
    argv = list(sys.argv[1:] if argv is None else argv)
    if '--' in argv:
        cut = argv.index('--')
        argv, command = argv[:cut], argv[cut + 1:]
    else:
        command = []
    parser = OneLineParser(
        prog='python -m utils.training.launch',
        usage=('python -m utils.training.launch -n WORKERS [-s SERVERS] [--port PORT] '
               '-- COMMAND ...'),
        description=__doc__.split('\n\n')[0])
    parser.add_argument('-n', '--num-workers', type=int, required=True)
    parser.add_argument('-s', '--num-servers', type=int, default=1)
    parser.add_argument('--host', default='127.0.0.1',
                        help='address of the scheduler (DMLC_PS_ROOT_URI)')
    parser.add_argument('--port', type=int, default=0,
                        help='port of the scheduler (DMLC_PS_ROOT_PORT); default: a free one')
    parser.add_argument('--interface', default='lo',
                        help="network interface (DMLC_INTERFACE); '' to let ps-lite choose")
    args = parser.parse_args(argv)
    if not command:
        parser.error('no worker command: put it after --, e.g. -- python -m '
                     'chapters.train_basics --kvstore dist_sync')
    if args.num_workers < 1 or args.num_servers < 1:
        parser.error('-n and -s must be at least 1')
    if args.num_workers + args.num_servers + 1 > most_processes():
        parser.error('-n %d -s %d: %d processes with the scheduler; this machine (%d cores) '
                     'runs at most %d: give fewer, or start them on several machines '
                     '(docs/several-machines.md)' % (
                         args.num_workers, args.num_servers,
                         args.num_workers + args.num_servers + 1, usable_cores(),
                         most_processes()))
    if not 0 <= args.port < 65536:
        parser.error('--port must be between 1 and 65535')
    if command[0] in ('python', 'python3'):
        command = [sys.executable] + command[1:]
    args.command = command
    return args


def launch(args, out=None):
    """Run scheduler, servers and workers; return the exit status."""
    out = out or sys.stdout
    port = args.port or free_port(args.host)
    common = dict(host=args.host, port=port, num_workers=args.num_workers,
                  num_servers=args.num_servers, interface=args.interface)
    role_cmd = [sys.executable, '-c', 'import utils, mxnet']  # utils prepares numpy for mxnet
    children, workers = [], []

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        children.append(Child('scheduler', role_cmd, dmlc_env('scheduler', **common), out))
        for i in range(args.num_servers):
            children.append(Child('server %d' % i, role_cmd, dmlc_env('server', **common), out))
        for i in range(args.num_workers):
            try:
                worker = Child('worker %d' % i, args.command, dmlc_env('worker', **common), out)
            except OSError as err:
                print('error: cannot start %s: %s' % (args.command[0], err.strerror),
                      file=sys.stderr)
                stop_all(children)
                return 127
            children.append(worker)
            workers.append(worker)
        drain_deadline = None
        while True:
            now = time.time()
            for c in children:
                if c.finished_at is None and c.proc.poll() is not None:
                    c.finished_at = now
            failed = [c for c in children if c.proc.returncode not in (None, 0)]
            if failed:
                first = min(failed, key=lambda c: c.finished_at)
                status = exit_status(first.proc.returncode)
                print('%s exited with status %d: stopping the other processes'
                      % (first.name, status), file=sys.stderr)
                stop_all(children)
                return status
            if all(not c.alive() for c in children):
                break
            if drain_deadline is None and all(not w.alive() for w in workers):
                drain_deadline = time.time() + DRAIN_GRACE
            if drain_deadline is not None and time.time() > drain_deadline:
                print('the workers finished but the scheduler or a server did not stop within '
                      '%d s (did the workers create a dist kvstore?): stopping them'
                      % DRAIN_GRACE, file=sys.stderr)
                stop_all(children)
                break
            time.sleep(0.05)
        for c in children:
            c.thread.join(timeout=2)
        return 0
    except KeyboardInterrupt:
        print('interrupted: stopping every process', file=sys.stderr)
        stop_all(children)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv=None):
    args = parse_args(argv)
    sys.exit(launch(args))


if __name__ == '__main__':
    main()
