import hashlib
import http.server
import io
import os
import socket
import sys
import threading
import zipfile

import numpy as np
import pytest

# The project root on sys.path, and utils imported first so OMP_NUM_THREADS is set before MXNet.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import utils  # noqa: E402,F401
from assignments import sandbox as _sandbox  # noqa: E402

# Without bubblewrap the grader refuses to run student code unless told the machine is
# disposable. The suite grades the project's own solutions and planted mistakes, so it says
# so for itself; the tests that need a guard skip, those of the refusal unset this.
_BOX = _sandbox.Sandbox(use_zygote=False)
NO_BUBBLEWRAP = None if _BOX.bwrap else (_BOX.problem or 'bubblewrap is not installed')
if NO_BUBBLEWRAP:
    os.environ.setdefault(_sandbox.DISPOSABLE_ENV, '1')


def pytest_report_header(config):
    if NO_BUBBLEWRAP:
        return ('no sandbox for the grader (%s): its tests grade the project\'s own solutions '
                'with %s=1, those that need a guard skip'
                % (NO_BUBBLEWRAP, _sandbox.DISPOSABLE_ENV))


class Site:
    """What the test HTTP server serves: `files` {URL path: bytes}; `lengths` {URL path:
    Content-Length to announce} (more than the body: a transfer that breaks off); `hits`, the
    paths asked for, in order."""

    def __init__(self, url):
        self.url = url
        self.files, self.lengths, self.hits = {}, {}, []

    def put(self, path, body, length=None):
        self.files[path] = body
        if length is not None:
            self.lengths[path] = length
        return self.url + path


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        site = self.server.site
        site.hits.append(self.path)
        body = site.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header('Content-Length', str(site.lengths.get(self.path, len(body))))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    """A local HTTP server on 127.0.0.1 (the tests' stand-in for mirrors and the model
    store); yields its Site."""
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _Handler)
    httpd.site = Site('http://127.0.0.1:%d' % httpd.server_address[1])
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.site
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def dead_url():
    """A URL on a port nobody listens on."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    return 'http://127.0.0.1:%d/hotdog.zip' % port


def _png(pixels):
    import matplotlib.image
    buf = io.BytesIO()
    matplotlib.image.imsave(buf, pixels, format='png')
    return buf.getvalue()


@pytest.fixture
def hotdog_mirror(http_server):
    """serve(per_class=(train, test), extra={name: bytes}) -> (URL, sha1) of a small
    hotdog.zip in the real layout; one image per split is smaller than the crop."""
    def serve(per_class=(6, 2), extra=None):
        rng = np.random.RandomState(0)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, 'w') as zf:
            for split, count in zip(('train', 'test'), per_class):
                for cls, shade in (('hotdog', 200), ('not-hotdog', 60)):
                    for i in range(count):
                        size = (20, 30) if i == 0 else (48, 40)
                        zf.writestr('hotdog/%s/%s/%d.png' % (split, cls, i),
                                    _png(np.clip(rng.normal(shade, 30, size=size + (3,)),
                                                 0, 255).astype('uint8')))
            for name, data in (extra or {}).items():
                zf.writestr(name, data)
        body = buf.getvalue()
        return http_server.put('/hotdog.zip', body), hashlib.sha1(body).hexdigest()
    return serve


@pytest.fixture
def run_chapter(tmp_path):
    """run(name, *argv) -> (namespace, metrics): the chapter run with its figures in
    tmp_path/out and its metrics read back from a JSON file."""
    import json

    def run(name, *argv):
        metrics = tmp_path / ('%s-metrics.json' % name)
        namespace = utils.run_chapter('chapters.' + name, ['--out', str(tmp_path / 'out'),
                                                           '--metrics-json', str(metrics),
                                                           '--no-progress'] + list(argv))
        return namespace, json.loads(metrics.read_text())
    return run


@pytest.fixture(scope='module')
def random_mobilenet(tmp_path_factory):
    """gluoncv's mobilenet0.25, randomly initialised: its parameters file and its sha1."""
    from gluoncv.model_zoo import get_model
    from mxnet import nd
    net = get_model('mobilenet0.25', classes=1000)
    net.initialize()
    net(nd.zeros((1, 3, 32, 32)))
    path = str(tmp_path_factory.mktemp('store') / 'random.params')
    net.save_parameters(path)
    with open(path, 'rb') as f:
        data = f.read()
    return net, data, hashlib.sha1(data).hexdigest()


def chromium_or_skip():
    """The Chromium the browser tests drive: they skip without one (the suite passes on a
    machine without a browser) but fail when GLUON_TRANSFER_REQUIRE_BROWSER is set (CI has
    one, and a skip there would hide a broken install)."""
    from bookgen.cdp import INSTALL_HINT, find_chromium
    found = find_chromium()
    if not found:
        if os.environ.get('GLUON_TRANSFER_REQUIRE_BROWSER'):
            pytest.fail(INSTALL_HINT)
        pytest.skip(INSTALL_HINT)
    return found
