"""A headless Chromium driven through the DevTools protocol over a pipe.

Chromium's `--remote-debugging-pipe` reads commands on file descriptor 3 and writes replies and
events on 4, each a JSON message ended by a NUL byte (what playwright does under the hood).
Standard library only: no browser download, no websocket package, no open port.
"""
import base64
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time

INSTALL_HINT = ('no chromium found: install it with `apt-get update && apt-get install -y '
                'chromium fonts-noto-cjk` (fonts-noto-cjk draws the Chinese titles), '
                'or set CHROMIUM=/path/to/chromium')
FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync',
         '--disable-default-apps', '--disable-extensions', '--hide-scrollbars',
         '--mute-audio', '--remote-debugging-pipe']


def find_chromium():
    """Path of a Chromium binary, or None."""
    named = os.environ.get('CHROMIUM')
    if named:
        return named if os.path.exists(named) else shutil.which(named)
    for name in ('chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable'):
        found = shutil.which(name)
        if found:
            return found
    return None


class BrowserError(RuntimeError):
    pass


class Browser:
    """One headless Chromium with a fresh profile; `page()` opens a tab. Use as a context
    manager: the process and its profile folder go away at the end."""

    def __init__(self, executable=None, timeout=30, flags=()):
        """`flags`: more command-line flags, e.g. a fake camera for a test."""
        executable = executable or find_chromium()
        if not executable:
            raise BrowserError(INSTALL_HINT)
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix='book-chromium-')
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def plumb():  # in the child: the pipes on the descriptors Chromium expects
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_browser_r, from_browser_w)]
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        self.proc = subprocess.Popen(
            [executable] + FLAGS + list(flags) + ['--user-data-dir=' + self.profile, 'about:blank'],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            pass_fds=(3, 4), preexec_fn=plumb)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b''
        self._next_id = 0
        self.events = []  # (sessionId, method, params), in arrival order

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.send('Browser.close')
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._to_browser, self._from_browser):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)

    def _read_message(self, deadline):
        while b'\0' not in self._buffer:
            if time.time() > deadline:
                raise BrowserError('chromium did not answer within %d s' % self.timeout)
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                raise BrowserError('chromium closed its DevTools pipe (exit status %s)'
                                   % self.proc.poll())
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b'\0', 1)
        return json.loads(message)

    def send(self, method, params=None, session=None):
        """Send one command and return its result; events that arrive meanwhile are kept."""
        self._next_id += 1
        message = {'id': self._next_id, 'method': method, 'params': params or {}}
        if session:
            message['sessionId'] = session
        os.write(self._to_browser, json.dumps(message).encode() + b'\0')
        deadline = time.time() + self.timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get('id') == self._next_id:
                if 'error' in reply:
                    raise BrowserError('%s: %s' % (method, reply['error'].get('message')))
                return reply.get('result', {})
            if 'method' in reply:
                self.events.append((reply.get('sessionId'), reply['method'],
                                    reply.get('params', {})))

    def wait_for(self, method, session, after=0):
        """The first event `method` of `session` at or after index `after` in self.events."""
        deadline = time.time() + self.timeout
        while True:
            for sid, name, params in self.events[after:]:
                if sid == session and name == method:
                    return params
            reply = self._read_message(deadline)
            if 'method' in reply:
                self.events.append((reply.get('sessionId'), reply['method'],
                                    reply.get('params', {})))

    def page(self, width=1280, height=800):
        target = self.send('Target.createTarget', {'url': 'about:blank'})['targetId']
        session = self.send('Target.attachToTarget', {'targetId': target,
                                                      'flatten': True})['sessionId']
        return Page(self, session, width, height)


class Page:
    """One tab: its console errors, exceptions and requests are recorded from the start."""

    def __init__(self, browser, session, width, height):
        self.browser, self.session = browser, session
        for domain in ('Page', 'Runtime', 'Log', 'Network'):
            self.send(domain + '.enable')
        self.send('Emulation.setDeviceMetricsOverride',
                  {'width': width, 'height': height, 'deviceScaleFactor': 1, 'mobile': False})
        self.mark = len(browser.events)

    def send(self, method, params=None):
        return self.browser.send(method, params, self.session)

    def goto(self, url):
        """Load `url`, wait for its load event; return the events of this load."""
        self.mark = len(self.browser.events)
        self.send('Page.navigate', {'url': url})
        self.browser.wait_for('Page.loadEventFired', self.session, self.mark)
        self.evaluate('new Promise(r => requestAnimationFrame(() => setTimeout(r, 50)))')

    def evaluate(self, expression):
        """The value of a JavaScript expression (promises awaited); raises on an exception."""
        result = self.send('Runtime.evaluate', {'expression': expression, 'returnByValue': True,
                                                'awaitPromise': True})
        if 'exceptionDetails' in result:
            raise BrowserError('JavaScript: %s' % result['exceptionDetails'].get(
                'exception', {}).get('description', result['exceptionDetails'].get('text')))
        return result['result'].get('value')

    def _events(self, method):
        return [p for sid, name, p in self.browser.events[self.mark:]
                if sid == self.session and name == method]

    def requests(self):
        """URLs this page asked for since the last goto (the browser's own request log)."""
        return [p['request']['url'] for p in self._events('Network.requestWillBeSent')]

    def errors(self):
        """Console errors, uncaught exceptions and failed loads since the last goto."""
        found = []
        for p in self._events('Runtime.consoleAPICalled'):
            if p['type'] in ('error', 'assert'):
                found.append('console.%s: %s' % (p['type'], ' '.join(
                    str(a.get('value', a.get('description', ''))) for a in p['args'])))
        for p in self._events('Runtime.exceptionThrown'):
            details = p['exceptionDetails']
            found.append('exception: %s' % details.get('exception', {}).get(
                'description', details.get('text')))
        for p in self._events('Log.entryAdded'):
            if p['entry']['level'] == 'error':
                found.append('log: %s %s' % (p['entry']['text'], p['entry'].get('url', '')))
        for p in self._events('Network.loadingFailed'):
            found.append('failed load: %s' % p.get('errorText'))
        return found

    def screenshot(self, clip=None):
        """PNG bytes of the viewport (or of `clip`, {x, y, width, height} in page pixels)."""
        params = {'format': 'png'}
        if clip:
            params['clip'] = dict(clip, scale=1)
        return base64.b64decode(self.send('Page.captureScreenshot', params)['data'])
