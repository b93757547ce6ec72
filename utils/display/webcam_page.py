"""The custom-classes chapter as a page in a browser, the way text 003 builds its own in
TensorFlow.js: the camera, a button per class (ours: the text does not print how its page adds
pictures), Train with the loss of every batch, live prediction, Save / Load.

    page = WebcamPage(classes, model, model_file, image_size, epochs)
    serve(page, port)              # prints the address; returns on Ctrl-C

`model` holds the chapter's functions (the page has no model code of its own):
    model.train(pictures, labels, classes, epochs, on_batch_end) -> a trained model
    model.predict(trained, picture) -> one probability per class
    model.save(trained, classes, path); model.load(path) -> (trained, classes)
pictures are HxWx3 RGB uint8 numpy arrays. Every call into them holds one lock (MXNet is not
called from two threads at once); training runs in a background thread, one at a time.

The server is the standard library's ThreadingHTTPServer: nothing to install, and a page for
one person on 127.0.0.1 needs no more. It serves the three files of webcam_page_static/ and
this JSON API (an error is a 4xx reply {"error": "one line"}):

    GET  /api/state               classes, picture counts, image size, epochs, training, model
    POST /api/classes             {"names": [...]}: rename the classes
    POST /api/pictures/<i>        body: a JPEG or PNG picture of class i -> {"count": n}
    GET  /api/pictures/<i>/<n>    picture n of class i as it was sent (the thumbnails)
    POST /api/train               {"epochs": n} (optional): train in the background
    GET  /api/training?since=<k>  the losses of batches k, k+1, ...; state; error
    POST /api/predict             body: a picture -> {"probabilities": [...], "class": i}
    POST /api/save                write the model file -> {"path": ...}
    POST /api/load                read the model file -> the new state
"""
import argparse
import errno
import http.server
import json
import os
import re
import threading
import traceback
import urllib.parse

import numpy as np

from ..errors import UserError, one_line

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'webcam_page_static')
FILES = {'/': ('index.html', 'text/html; charset=utf-8'),
         '/page.js': ('page.js', 'text/javascript; charset=utf-8'),
         '/page.css': ('page.css', 'text/css; charset=utf-8')}
MOST_BYTES = 8 << 20  # a picture larger than this is refused (a camera frame is ~20-100 KB)


def port(text):
    """A TCP port for --serve: 0 (any free port) to 65535."""
    if not re.fullmatch(r'\d+', text.strip()) or int(text) > 65535:
        raise argparse.ArgumentTypeError('%r: give a port from 1 to 65535, or 0 for any free '
                                         'port' % text)
    return int(text)


class BadRequest(Exception):
    """A request the page should not send: a 4xx reply with one line."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


def decode_picture(body):
    """An RGB uint8 array from JPEG or PNG bytes (OpenCV: no MXNet, so no lock needed)."""
    import cv2
    picture = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR) if body else None
    if picture is None:
        raise BadRequest('the body is not a JPEG or PNG picture (%d bytes)' % len(body), 415)
    return picture[:, :, ::-1].copy()


def class_names(names, count):
    if (not isinstance(names, list) or len(names) != count
            or not all(isinstance(n, str) for n in names)):
        raise BadRequest('give "names": a list of %d class names' % count)
    names = [n.strip() for n in names]
    if not all(names):
        raise BadRequest('a class name is empty: give every class a name')
    if len(set(names)) < len(names):
        raise BadRequest('two classes have the same name: give each its own')
    return names


class WebcamPage:
    """What the page shows and changes; thread-safe (every HTTP request has its thread)."""

    def __init__(self, classes, model, model_file, image_size, epochs):
        self.classes, self.model, self.model_file = list(classes), model, model_file
        self.image_size, self.epochs = image_size, epochs
        self.pictures = [[] for _ in classes]  # (bytes sent, RGB array) per class
        self.trained = None
        self.training = {'state': 'idle', 'losses': [], 'epochs': 0, 'error': None}
        self.lock = threading.Lock()  # the fields above
        self.mxnet = threading.Lock()  # every call into `model`
        self.trainings = 0

    # -- what the page reads ------------------------------------------------------------
    def state(self):
        with self.lock:
            return {'classes': self.classes, 'counts': [len(p) for p in self.pictures],
                    'image_size': self.image_size, 'epochs': self.epochs,
                    'training': self.training['state'], 'trained': self.trained is not None,
                    'model_file': os.path.abspath(self.model_file)}

    def picture(self, index, n):
        with self.lock:
            pictures = self.pictures[self._class_index(index)]
            if not 0 <= n < len(pictures):
                raise BadRequest('class %d has %d pictures: no picture %d'
                                 % (index, len(pictures), n), 404)
            return pictures[n][0]

    def training_since(self, since):
        with self.lock:
            t = self.training
            return {'state': t['state'], 'epochs': t['epochs'], 'error': t['error'],
                    'losses': t['losses'][since:], 'batches': len(t['losses'])}

    # -- what the page changes ----------------------------------------------------------
    def _class_index(self, index):
        if not 0 <= index < len(self.classes):
            raise BadRequest('no class %d: the classes are numbered 0 to %d'
                             % (index, len(self.classes) - 1), 404)
        return index

    def rename(self, names):
        with self.lock:
            self.classes = class_names(names, len(self.classes))

    def add_picture(self, index, body):
        picture = decode_picture(body)
        with self.lock:
            self.pictures[self._class_index(index)].append((body, picture))
            return len(self.pictures[index])

    def start_training(self, epochs=None):
        epochs = self.epochs if epochs is None else epochs
        if not isinstance(epochs, int) or isinstance(epochs, bool) or not 1 <= epochs <= 1000:
            raise BadRequest('"epochs" is %r: give a whole number from 1 to 1000' % (epochs,))
        with self.lock:
            if self.training['state'] == 'training':
                raise BadRequest('training is already running: wait for it to end', 409)
            empty = [name for name, p in zip(self.classes, self.pictures) if not p]
            if empty:
                raise BadRequest('no pictures of %s: hold its button while the camera shows '
                                 'it, then train' % ', '.join(empty))
            pictures = [p for per_class in self.pictures for _, p in per_class]
            labels = [i for i, per_class in enumerate(self.pictures) for _ in per_class]
            classes = list(self.classes)
            self.training = {'state': 'training', 'losses': [], 'epochs': epochs, 'error': None}
            self.trainings += 1
        threading.Thread(target=self._train, args=(pictures, labels, classes, epochs),
                         daemon=True).start()

    def _train(self, pictures, labels, classes, epochs):
        def on_batch_end(epoch, batch, loss):
            with self.lock:
                self.training['losses'].append([epoch, batch, loss])
        try:
            with self.mxnet:
                trained = self.model.train(pictures, labels, classes, epochs, on_batch_end)
        except Exception as err:  # the page says what went wrong; the log has the rest
            if not isinstance(err, UserError):
                traceback.print_exc()
            with self.lock:
                self.training.update(state='failed', error='training failed: %s' % one_line(err))
            return
        with self.lock:
            self.trained = trained
            self.training['state'] = 'trained'

    def _trained_model(self, action):
        with self.lock:
            if self.training['state'] == 'training':
                raise BadRequest('training is running: %s when it ends' % action, 409)
            if self.trained is None:
                raise BadRequest('no model yet: train it (or load a saved one) first', 409)
            return self.trained, list(self.classes)

    def predict(self, body):
        picture = decode_picture(body)
        trained, _ = self._trained_model('predict')
        with self.mxnet:
            probabilities = [float(p) for p in self.model.predict(trained, picture)]
        return {'probabilities': probabilities, 'class': int(np.argmax(probabilities))}

    def save(self):
        trained, classes = self._trained_model('save')
        try:
            with self.mxnet:
                self.model.save(trained, classes, self.model_file)
        except OSError as err:
            raise BadRequest('cannot write %s (%s): start the page with another --model-file'
                             % (self.model_file, one_line(err)), 409)
        return {'path': os.path.abspath(self.model_file), 'classes': classes}

    def load(self):
        with self.lock:
            if self.training['state'] == 'training':
                raise BadRequest('training is running: load when it ends', 409)
        try:
            with self.mxnet:
                trained, classes = self.model.load(self.model_file)
        except UserError as err:
            raise BadRequest(str(err), 409)
        with self.lock:
            if len(classes) != len(self.classes):
                raise BadRequest(
                    '%s was trained for %d classes (%s); this page has %d: start it with '
                    '--classes %s to use that model' % (
                        self.model_file, len(classes), ', '.join(classes), len(self.classes),
                        ','.join(classes)), 409)
            self.trained, self.classes = trained, list(classes)
            self.training = {'state': 'idle', 'losses': [], 'epochs': 0, 'error': None}
        return self.state()


def _handler(page):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = 'HTTP/1.1'

        def log_message(self, format, *args):  # quiet: the page shows what goes wrong
            pass

        def _reply(self, status, body, content_type='application/json'):
            if not isinstance(body, bytes):
                body = json.dumps(body).encode()
            self.send_response(status)
            self.send_header('Content-Type', content_type)
            self.send_header('Content-Length', str(len(body)))
            self.send_header('Cache-Control', 'no-store')
            self.end_headers()
            self.wfile.write(body)

        def _body(self):
            length = int(self.headers.get('Content-Length') or 0)
            if length > MOST_BYTES:
                raise BadRequest('%d bytes is too large: a picture of at most %d MB'
                                 % (length, MOST_BYTES >> 20), 413)
            return self.rfile.read(length)

        def _json(self):
            body = self._body()
            try:
                value = json.loads(body.decode('utf-8')) if body else {}
            except ValueError:
                raise BadRequest('the body is not JSON') from None
            if not isinstance(value, dict):
                raise BadRequest('the body is not a JSON object')
            return value

        def _route(self, method):
            url = urllib.parse.urlsplit(self.path)
            parts = [p for p in url.path.split('/') if p]
            numbers = [int(p) for p in parts[2:] if p.isdigit()]
            if method == 'GET' and url.path in FILES:
                name, content_type = FILES[url.path]
                with open(os.path.join(STATIC, name), 'rb') as f:
                    return self._reply(200, f.read(), content_type)
            if parts[:1] != ['api'] or len(numbers) != len(parts[2:]):
                raise BadRequest('no %s %s here' % (method, url.path), 404)
            where = (method, parts[1] if len(parts) > 1 else '', len(numbers))
            if where == ('GET', 'state', 0):
                return self._reply(200, page.state())
            if where == ('GET', 'pictures', 2):
                return self._reply(200, page.picture(*numbers), 'image/jpeg')
            if where == ('GET', 'training', 0):
                since = urllib.parse.parse_qs(url.query).get('since', ['0'])[0]
                if not since.isdigit():
                    raise BadRequest('since=%s: give the number of losses already read' % since)
                return self._reply(200, page.training_since(int(since)))
            if where == ('POST', 'classes', 0):
                page.rename(self._json().get('names'))
                return self._reply(200, page.state())
            if where == ('POST', 'pictures', 1):
                return self._reply(200, {'count': page.add_picture(numbers[0], self._body())})
            if where == ('POST', 'train', 0):
                page.start_training(self._json().get('epochs'))
                return self._reply(202, page.training_since(0))
            if where == ('POST', 'predict', 0):
                return self._reply(200, page.predict(self._body()))
            if where == ('POST', 'save', 0):
                self._body()
                return self._reply(200, page.save())
            if where == ('POST', 'load', 0):
                self._body()
                return self._reply(200, page.load())
            raise BadRequest('no %s %s here' % (method, url.path), 404)

        def _handle(self, method):
            try:
                self._route(method)
            except BadRequest as err:
                self.close_connection = True  # a refused body may be left unread
                self._reply(err.status, {'error': str(err)})
            except Exception as err:
                traceback.print_exc()
                self._reply(500, {'error': 'the server failed: %s' % one_line(err)})

        def do_GET(self):
            self._handle('GET')

        def do_POST(self):
            self._handle('POST')

    return Handler


def start(page, port=0, host='127.0.0.1'):
    """The server, already answering in a background thread; its address is server.url."""
    try:
        server = http.server.ThreadingHTTPServer((host, port), _handler(page))
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            raise UserError('port %d is in use: give another port (--serve 0 picks a free '
                            'one)' % port) from None
        raise UserError('cannot listen on %s:%d (%s)' % (host, port, one_line(err))) from None
    server.daemon_threads = True
    server.url = 'http://%s:%d/' % (host, server.server_address[1])
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def serve(page, port=0, host='127.0.0.1'):
    """Serve the page until Ctrl-C (or SIGTERM)."""
    import signal
    server = start(page, port, host)
    print('The page is at %s : open it in a browser on this machine (Ctrl-C stops the '
          'server)' % server.url, flush=True)
    stop = threading.Event()
    main = threading.current_thread() is threading.main_thread()  # only it gets signals
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set()) if main else None
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
        server.shutdown()
        server.server_close()
    print('Server stopped', flush=True)
