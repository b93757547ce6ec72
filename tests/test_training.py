import math
import re

import mxnet as mx
import numpy as np
import pytest
from mxnet import gluon, init, nd
from mxnet.gluon import nn

import utils
from utils.training.loop import TrainingDiverged, seed_everything

SOURCE_LINE = re.compile(r'^Epoch \d+\. Loss: \d+\.\d{3}, Train acc \d\.\d{2}, '
                         r'Test acc \d\.\d{2}, Time \d+\.\d sec')


def blobs(n, seed=0):
    rng = np.random.RandomState(seed)
    y = rng.randint(0, 2, size=n).astype('float32')
    x = (rng.normal(size=(n, 6)) + y[:, None]).astype('float32')
    return x, y


def mlp(ctx, dropout=0.0):
    net = nn.HybridSequential()
    net.add(nn.Dense(8, activation='relu'))
    if dropout:
        net.add(nn.Dropout(dropout))
    net.add(nn.Dense(2))
    seed_everything(42)
    net.initialize(init.Xavier(), ctx=ctx)
    return net


def fit(ctx, n=50, batch_size=16, epochs=2, shuffle=False, **kwargs):
    x, y = blobs(n)
    data = gluon.data.DataLoader(gluon.data.ArrayDataset(x, y), batch_size, shuffle=shuffle)
    net = mlp(ctx, kwargs.pop('dropout', 0.0))
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.5, 'momentum': 0.9})
    history = utils.train(data, data, net, gluon.loss.SoftmaxCrossEntropyLoss(), trainer, ctx,
                          epochs, progress=False, print_fn=lambda *a: None, **kwargs)
    return net, history


def params_of(net):
    return {name.split('_', 1)[1]: p.data(mx.cpu(0)).asnumpy()
            for name, p in net.collect_params().items()}


@pytest.mark.parametrize('n', [50, 49])  # last batch of 2 samples; of 1 sample (< 2 devices)
def test_two_contexts_match_one(n):
    one, h1 = fit([mx.cpu(0)], n=n)
    two, h2 = fit([mx.cpu(0), mx.cpu(1)], n=n)
    p1, p2 = params_of(one), params_of(two)
    assert p1.keys() == p2.keys()
    for name in p1:
        np.testing.assert_allclose(p1[name], p2[name], atol=1e-5, err_msg=name)
    # every replica holds the same weights
    for p in two.collect_params().values():
        np.testing.assert_allclose(p.data(mx.cpu(0)).asnumpy(), p.data(mx.cpu(1)).asnumpy())
    np.testing.assert_allclose(h1['loss'], h2['loss'], rtol=1e-5)
    assert h1['train_acc'] == h2['train_acc']


def test_history_on_hand_checked_problem(capsys):
    # Dense(2) with weights [1, -1] and no learning: outputs (x, -x), so for label 0 the loss is
    # log(1 + exp(-2x)) and for label 1 it is log(1 + exp(2x)); prediction is 0 iff x >= 0.
    x = np.array([[1.0], [2.0], [-1.0], [0.5], [-3.0]], dtype='float32')
    y = np.array([0, 0, 0, 1, 1], dtype='float32')
    net = nn.Dense(2, in_units=1)
    net.initialize()
    net.weight.set_data(nd.array([[1.0], [-1.0]]))
    net.bias.set_data(nd.zeros(2))
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.0})
    data = gluon.data.DataLoader(gluon.data.ArrayDataset(x, y), 2)
    history = utils.train(data, data, net, gluon.loss.SoftmaxCrossEntropyLoss(), trainer,
                          mx.cpu(), 1, progress=False)
    expected = np.mean([math.log1p(math.exp(-2 * 1.0)), math.log1p(math.exp(-2 * 2.0)),
                        math.log1p(math.exp(2.0)), math.log1p(math.exp(2 * 0.5)),
                        math.log1p(math.exp(-6.0))])
    assert history['loss'][0] == pytest.approx(expected, rel=1e-5)
    assert history['train_acc'][0] == pytest.approx(3 / 5)  # right: 1.0, 2.0, -3.0
    assert history['test_acc'][0] == pytest.approx(3 / 5)
    assert set(history) == {'loss', 'train_acc', 'test_acc', 'seconds', 'images_per_sec'}
    assert history['images_per_sec'][0] > 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == 'Start training on [cpu(0)]'
    assert SOURCE_LINE.match(lines[1]), lines[1]
    assert lines[1].startswith('Epoch 0. Loss: %.3f, Train acc 0.60, Test acc 0.60, Time '
                               % expected)
    assert lines[1].endswith(' images/sec)')


def test_nan_loss_stops_naming_epoch_and_batch():
    x, y = blobs(16)
    x[9, :] = np.inf  # batch 2 with batch size 4 (ReLU turns a NaN input into 0, not inf)
    data = gluon.data.DataLoader(gluon.data.ArrayDataset(x, y), 4)
    net = mlp(mx.cpu())
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.1})
    with pytest.raises(TrainingDiverged, match=r'(nan|inf) at epoch 0, batch 2: lower'):
        utils.train(data, None, net, gluon.loss.SoftmaxCrossEntropyLoss(), trainer, mx.cpu(),
                    3, progress=False)


def test_resume_from_checkpoint_equals_uninterrupted_run(tmp_path):
    common = dict(shuffle=True, dropout=0.3, seed=7)
    straight, h_straight = fit([mx.cpu()], epochs=3, **common)
    ckpt = str(tmp_path / 'run.ckpt')
    fit([mx.cpu()], epochs=2, checkpoint=ckpt, **common)
    resumed, h_resumed = fit([mx.cpu()], epochs=3, checkpoint=ckpt, resume=True, **common)
    for name, value in params_of(straight).items():
        np.testing.assert_allclose(value, params_of(resumed)[name], atol=1e-6, err_msg=name)
    assert h_resumed['loss'] == pytest.approx(h_straight['loss'], rel=1e-6)
    assert len(h_resumed['loss']) == 3
    assert [p.name for p in tmp_path.iterdir()] == ['run.ckpt']  # no temporary file left


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    ckpt = tmp_path / 'run.ckpt'
    ckpt.write_bytes(b'not a zip')
    with pytest.raises(utils.UserError, match='cannot be read.*delete it'):
        fit([mx.cpu()], checkpoint=str(ckpt), resume=True)


def test_batchnorm_statistics_averaged_across_replicas():
    ctx = [mx.cpu(0), mx.cpu(1)]
    net = nn.HybridSequential()
    net.add(nn.Dense(4), nn.BatchNorm(), nn.Dense(2))
    net.initialize(init.Xavier(), ctx=ctx)
    x, y = blobs(80)
    x[20:40] += 5.0  # the two halves of each batch differ, so replicas see different statistics
    x[60:] += 5.0
    # two batches: the Trainer's first step copies replica 0's values to all replicas
    data = gluon.data.DataLoader(gluon.data.ArrayDataset(x, y), 40)
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.1})
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    utils.train(data, None, net, loss, trainer, ctx, 1, progress=False, sync_batchnorm=False)
    mean = net[1].running_mean
    assert not np.allclose(mean.data(ctx[0]).asnumpy(), mean.data(ctx[1]).asnumpy())
    expected = (mean.data(ctx[0]).asnumpy() + mean.data(ctx[1]).asnumpy()) / 2
    utils.training.loop.average_batchnorm_stats(net, ctx)
    np.testing.assert_allclose(mean.data(ctx[0]).asnumpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(mean.data(ctx[1]).asnumpy(), expected, rtol=1e-6)
    # evaluation no longer depends on which replica scores which shard
    test = gluon.data.DataLoader(gluon.data.ArrayDataset(x, y), 40)
    assert utils.evaluate_accuracy(test, net, ctx) == utils.evaluate_accuracy(test, net, ctx[::-1])


def test_evaluate_accuracy_over_contexts():
    x = np.array([[1.0], [-1.0], [2.0]], dtype='float32')
    y = np.array([0, 0, 1], dtype='float32')
    net = nn.Dense(2, in_units=1)
    net.initialize(ctx=[mx.cpu(0), mx.cpu(1)])
    net.weight.set_data(nd.array([[1.0], [-1.0]]))
    net.bias.set_data(nd.zeros(2))
    data = gluon.data.DataLoader(gluon.data.ArrayDataset(x, y), 3)
    assert utils.evaluate_accuracy(data, net, [mx.cpu(0), mx.cpu(1)]) == pytest.approx(1 / 3)


def fit_arrays(ctx, n, batch_size=16):
    x, y = blobs(n)
    net = mlp(ctx)
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.5, 'momentum': 0.9})
    history = utils.train_arrays(net, gluon.loss.SoftmaxCrossEntropyLoss(), trainer, (x, y),
                                 (x, y), batch_size, 2, ctx, print_fn=lambda *a: None)
    return net, history


@pytest.mark.parametrize('n', [50, 49])  # last batch of 2 samples; of 1 sample (< 2 devices)
def test_train_arrays_two_contexts_match_one(n):
    one, h1 = fit_arrays([mx.cpu(0)], n)
    two, h2 = fit_arrays([mx.cpu(0), mx.cpu(1)], n)
    p1, p2 = params_of(one), params_of(two)
    for name in p1:
        np.testing.assert_allclose(p1[name], p2[name], atol=1e-5, err_msg=name)
    for p in two.collect_params().values():
        np.testing.assert_allclose(p.data(mx.cpu(0)).asnumpy(), p.data(mx.cpu(1)).asnumpy())
    np.testing.assert_allclose(h1['loss'], h2['loss'], rtol=1e-5)
    np.testing.assert_allclose(h1['val_loss'], h2['val_loss'], rtol=1e-5)
    assert h1['loss'][1] < h1['loss'][0]


class RecordingTrainer(gluon.Trainer):
    """A Trainer that notes its learning rate at every step."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.rates = []

    def step(self, batch_size, ignore_stale_grad=False):
        self.rates.append(self.learning_rate)
        super().step(batch_size, ignore_stale_grad)


@pytest.mark.parametrize('epochs, expected', [
    (1, [1.0] * 2 + [0.2] * 2),                 # one epoch of 4 steps: drops after step 2
    (2, [1.0] * 4 + [0.2] * 4),                 # two: at the epoch boundary, as before
    (3, [1.0] * 6 + [0.2] * 6),                 # three: after 6 of the 12 steps, mid-epoch
])
def test_train_arrays_drops_the_rate_after_a_fraction_of_the_steps(epochs, expected):
    x, y = blobs(40)   # batches of 10: 4 steps per epoch
    net = mlp([mx.cpu()])
    trainer = RecordingTrainer(net.collect_params(), 'sgd', {'learning_rate': 1.0})
    utils.train_arrays(net, gluon.loss.SoftmaxCrossEntropyLoss(), trainer, (x, y), None, 10,
                       epochs, lr_drop=0.5, print_fn=lambda *a: None)
    np.testing.assert_allclose(trainer.rates, expected)


def test_schedule_in_two_calls_continues_the_epoch_seeds():
    """A learning-rate drop trains in two calls (fine_tuning_exercises, exercise 1): with
    first_epoch the second call's epochs draw new shuffles and dropout masks, so the two calls
    end where one call of all epochs does; without it they replayed epoch 0's."""
    x, y = blobs(50)
    data = gluon.data.DataLoader(gluon.data.ArrayDataset(x, y), 16, shuffle=True)
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    quiet = dict(progress=False, print_fn=lambda *a: None, seed=7)

    def run(calls):
        net = mlp([mx.cpu()], dropout=0.3)
        trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.5})
        for epochs, first_epoch in calls:
            utils.train(data, None, net, loss, trainer, mx.cpu(), epochs, first_epoch=first_epoch,
                        **quiet)
        return params_of(net)

    straight = run([(3, 0)])
    for name, value in run([(1, 0), (2, 1)]).items():
        np.testing.assert_allclose(value, straight[name], atol=1e-6, err_msg=name)
    replayed = run([(1, 0), (2, 0)])  # what the exercise did: epochs 0, 0, 1
    assert any(not np.allclose(value, straight[name], atol=1e-4)
               for name, value in replayed.items())


def test_train_fine_tuning_passes_the_first_epoch(monkeypatch):
    seen = {}
    monkeypatch.setattr(utils, 'train',  # the saved copy calls utils.train
                        lambda *args, **kwargs: seen.update(kwargs) or 'history')
    net = nn.HybridSequential()
    net.add(nn.Dense(2))
    net.initialize()
    assert utils.train_fine_tuning(net, [mx.cpu()], [], [], epochs=2, seed=3,
                                   first_epoch=4) == 'history'
    assert (seen['seed'], seen['first_epoch']) == (3, 4)
