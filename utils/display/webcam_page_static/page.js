'use strict';
// The custom-classes page: it sends the camera's pictures to the local server, which trains
// and predicts with the chapter's Gluon code. Nothing here knows about models.

const $ = (id) => document.getElementById(id);
const video = $('video');
const canvas = $('frame');
const THUMBNAILS = 5;
let state = null; // the server's /api/state
let cameraReady = false;
let predicting = false;
let lossesRead = 0;
let predictions = 0;
let predictingSince = 0;
const uploading = new Set();

class ServerDown extends Error {}

function say(text, kind) {
  const box = $('message');
  box.textContent = text || '';
  box.className = kind || 'error';
  box.hidden = !text;
}

async function api(method, path, body) {
  const headers = typeof body === 'string' ? {'Content-Type': 'application/json'} : {};
  let response;
  try {
    response = await fetch(path, {method, body, headers});
  } catch (err) {
    throw new ServerDown('The server at ' + location.origin + ' does not answer: it has ' +
      'stopped. Start it again (python -m chapters.custom_classes --serve), then reload.');
  }
  let reply = null;
  try {
    reply = await response.json();
  } catch (err) {
    reply = null;
  }
  if (!response.ok) {
    const error = new Error((reply && reply.error) ||
      'the server answered ' + response.status + ' ' + response.statusText);
    error.status = response.status;
    throw error;
  }
  if ($('message').dataset.serverDown) {  // it answers again
    delete $('message').dataset.serverDown;
    say('');
  }
  return reply;
}

function fail(err) {
  say(err.message);
  if (err instanceof ServerDown) {
    $('message').dataset.serverDown = '1';
  }
}

// -- the camera ------------------------------------------------------------------------
const CAMERA_PROBLEMS = {
  NotAllowedError: 'the permission to use the camera was refused. Allow the camera for ' +
    'this page (the camera icon in the address bar), then reload.',
  NotFoundError: 'no camera was found. Plug one in, then reload.',
  NotReadableError: 'the camera is in use by another program or failed to start. Close ' +
    'that program, then reload.',
  OverconstrainedError: 'the camera cannot give the pictures asked for.',
  SecurityError: 'the browser does not let this page use a camera.',
};

function cameraProblem(text) {
  cameraReady = false;
  $('camera-state').textContent = 'No camera';
  say('No camera: ' + text + ' Pictures cannot be added; a saved model can still be ' +
    'loaded.');
  updateButtons();
}

async function startCamera() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    cameraProblem('this browser gives the page no camera. Open it as ' +
      'http://127.0.0.1:PORT/ (the address the server printed) in a recent browser.');
    return;
  }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({video: true, audio: false});
    video.srcObject = stream;
    await video.play();
    stream.getVideoTracks()[0].addEventListener('ended', () =>
      cameraProblem('the camera stopped sending pictures. Plug it in again, then reload.'));
  } catch (err) {
    cameraProblem(CAMERA_PROBLEMS[err.name] || (err.name + ': ' + err.message));
    return;
  }
  cameraReady = true;
  $('camera-state').textContent = 'Camera on, ' + video.videoWidth + '×' + video.videoHeight;
  updateButtons();
}

// The camera's picture now: its centre square, at the server's picture size, as a JPEG.
function grab() {
  const size = state.image_size;
  const side = Math.min(video.videoWidth, video.videoHeight);
  canvas.width = size;
  canvas.height = size;
  canvas.getContext('2d').drawImage(video, (video.videoWidth - side) / 2,
    (video.videoHeight - side) / 2, side, side, 0, 0, size, size);
  return new Promise((resolve) => canvas.toBlob(resolve, 'image/jpeg', 0.92));
}

// -- the classes: a name, a button, the count and the last pictures --------------------
function element(tag, className, text) {
  const made = document.createElement(tag);
  if (className) made.className = className;
  if (text) made.textContent = text;
  return made;
}

function buildClasses() {
  const box = $('classes');
  box.textContent = '';
  state.classes.forEach((name, i) => {
    const row = element('div', 'class');
    const input = element('input');
    input.value = name;
    input.setAttribute('aria-label', 'name of class ' + (i + 1));
    input.addEventListener('change', rename);
    const button = element('button', 'add', 'Add picture');
    button.type = 'button';
    button.title = 'click: one picture; hold: one picture every 0.15 s';
    let holding = null;
    const release = () => {
      clearInterval(holding);
      holding = null;
    };
    button.addEventListener('pointerdown', (event) => {
      event.preventDefault();
      if (holding || button.disabled) return;
      addPicture(i);
      holding = setInterval(() => addPicture(i), 150);
    });
    ['pointerup', 'pointerleave', 'pointercancel'].forEach((type) =>
      button.addEventListener(type, release));
    button.addEventListener('click', (event) => {
      if (event.detail === 0) addPicture(i); // the keyboard's Enter or Space
    });
    const probability = element('div', 'probability');
    probability.append(element('div', 'bar'), element('span', 'percent'),
      element('span', 'mark'));
    probability.firstChild.append(element('div'));
    row.append(input, button, probability, element('span', 'count'),
      element('div', 'thumbs'));
    box.append(row);
    showCount(i);
    for (let n = Math.max(0, state.counts[i] - THUMBNAILS); n < state.counts[i]; n++) {
      addThumbnail(i, n);
    }
  });
  updateButtons();
}

function rows() {
  return Array.from(document.querySelectorAll('#classes .class'));
}

function showCount(i) {
  const n = state.counts[i];
  rows()[i].querySelector('.count').textContent = n + (n === 1 ? ' picture' : ' pictures');
}

function addThumbnail(i, n) {
  const thumbs = rows()[i].querySelector('.thumbs');
  const img = element('img');
  img.src = '/api/pictures/' + i + '/' + n;
  img.alt = 'picture ' + (n + 1) + ' of ' + state.classes[i];
  thumbs.append(img);
  while (thumbs.children.length > THUMBNAILS) thumbs.firstChild.remove();
}

async function addPicture(i) {
  if (!cameraReady || uploading.has(i)) return;
  uploading.add(i);
  try {
    const reply = await api('POST', '/api/pictures/' + i, await grab());
    state.counts[i] = reply.count;
    showCount(i);
    addThumbnail(i, reply.count - 1);
  } catch (err) {
    fail(err);
  } finally {
    uploading.delete(i);
  }
}

// One rename at a time, each sending the boxes as they are then: answers that overtook one
// another would leave the server with older names than the boxes show.
let renaming = Promise.resolve();

function rename() {
  renaming = renaming.then(async () => {
    const names = rows().map((row) => row.querySelector('input').value);
    let failed = false;
    try {
      state = await api('POST', '/api/classes', JSON.stringify({names}));
    } catch (err) {
      fail(err);
      failed = true;
    }
    rows().forEach((row, i) => {
      const box = row.querySelector('input');
      if (failed || box !== document.activeElement) box.value = state.classes[i];
    });
  });
}

function updateButtons() {
  const training = state && state.training === 'training';
  rows().forEach((row) => { row.querySelector('button').disabled = !cameraReady; });
  $('train').disabled = training;
  $('save').disabled = training;
  $('load').disabled = training;
}

// -- training: the loss of every batch, as the text's onBatchEnd shows it ---------------
async function train() {
  if (state.training === 'training') return;
  predicting = false;
  state.training = 'training';
  updateButtons();
  $('loss').textContent = 'Training…';
  try {
    await api('POST', '/api/train', JSON.stringify({epochs: Number($('epochs').value)}));
  } catch (err) {
    state.training = 'idle';
    updateButtons();
    $('loss').textContent = '';
    fail(err);
    return;
  }
  say('');
  lossesRead = 0;
  pollTraining();
}

async function pollTraining() {
  let reply;
  try {
    reply = await api('GET', '/api/training?since=' + lossesRead);
  } catch (err) {
    fail(err);
    setTimeout(pollTraining, 2000);
    return;
  }
  lossesRead += reply.losses.length;
  if (reply.losses.length) {
    const [epoch, batch, loss] = reply.losses[reply.losses.length - 1];
    // Math.max: a loss is never below 0, but float rounding can give -1e-8 ("-0.00000")
    $('loss').textContent = 'Loss: ' + Math.max(loss, 0).toFixed(5) + ' (epoch ' + (epoch + 1) + ' of ' +
      reply.epochs + ', batch ' + (batch + 1) + ')';
  }
  if (reply.state === 'training') {
    setTimeout(pollTraining, 200);
    return;
  }
  state.training = reply.state;
  updateButtons();
  if (reply.state === 'failed') {
    say(reply.error);
  } else if (reply.state === 'trained') {
    state.trained = true;
    startPredicting();
  }
}

// -- prediction: one frame after another, as the text's requestAnimationFrame loop ------
function startPredicting() {
  if (predicting || !cameraReady) return;
  predicting = true;
  predictions = 0;
  predictingSince = performance.now();
  requestAnimationFrame(predictFrame);
}

async function predictFrame() {
  if (!predicting) return;
  let reply;
  try {
    reply = await api('POST', '/api/predict', await grab());
  } catch (err) {
    fail(err);
    if (err instanceof ServerDown) {
      setTimeout(() => requestAnimationFrame(predictFrame), 2000);
    } else {
      predicting = false;
    }
    return;
  }
  showPrediction(reply);
  requestAnimationFrame(predictFrame);
}

function showPrediction(reply) {
  rows().forEach((row, i) => {
    const p = reply.probabilities[i];
    const chosen = i === reply.class;
    row.classList.toggle('predicted', chosen);
    row.querySelector('.bar div').style.width = (100 * p).toFixed(1) + '%';
    row.querySelector('.percent').textContent = ' ' + (100 * p).toFixed(1) + '%';
    row.querySelector('.mark').textContent = chosen ? ' ◀ predicted' : '';
  });
  predictions += 1;
  const seconds = (performance.now() - predictingSince) / 1000;
  const line = $('predictions');
  line.dataset.count = predictions;
  line.textContent = 'Prediction ' + predictions + ' (' +
    (predictions / Math.max(seconds, 0.001)).toFixed(1) + ' per second)';
}

// -- the model file --------------------------------------------------------------------
async function save() {
  try {
    const reply = await api('POST', '/api/save');
    say('Saved to ' + reply.path + ', the file --predict reads.', 'info');
  } catch (err) {
    fail(err);
  }
}

async function load() {
  try {
    state = await api('POST', '/api/load');
  } catch (err) {
    fail(err);
    return;
  }
  buildClasses();
  say('Loaded ' + state.model_file + ': ' + state.classes.join(', ') + '.', 'info');
  startPredicting();
}

async function start() {
  try {
    state = await api('GET', '/api/state');
  } catch (err) {
    fail(err);
    return;
  }
  $('epochs').value = state.epochs;
  $('model-file').textContent = 'model file: ' + state.model_file;
  $('train').addEventListener('click', train);
  $('save').addEventListener('click', save);
  $('load').addEventListener('click', load);
  buildClasses();
  if (state.training === 'training') {
    $('loss').textContent = 'Training…';
    pollTraining();
  }
  await startCamera();
  if (state.trained && state.training !== 'training') startPredicting();
}

start();
