"""What the tests of an assignment use: probes, graded checks, and a few comparisons.

A test is a pair. The *probe* runs in the sandbox with the student's module and returns what
it observed, a dict of arrays, numbers and text; it judges nothing. The *check* runs in the
grader, which never imports student code, and judges those observations against values of
its own (computed by the test's own code, or from the reference solution at build time):

    @probe(timeout=30)
    def iou_of_two_boxes(sub):
        return {'iou': sub.iou([[0, 10, 0, 10]], [[5, 15, 0, 10]])}

    @graded(1, probe=iou_of_two_boxes)
    def test_iou_partial_overlap(seen):
        assert_close(seen['iou'], [50 / 150], 'IoU of half-overlap')

A check passes when it returns and fails on an AssertionError (any other error: the
observations did not have the expected form). Several checks may share one probe. The grader
reads the decorators' arguments without running the file, so they must be literals (and the
probe a name).
"""
import numpy as np


def probe(timeout=30):
    """Mark a function `probe(sub)` as run in the sandbox, stopped after `timeout` seconds."""
    def mark(function):
        function.is_probe, function.timeout = True, timeout
        return function
    return mark


def graded(points, probe=None):
    """Mark a function `test_<what>(seen)` as worth `points`, judging `probe`'s observations."""
    def mark(check):
        check.points, check.probe = points, probe
        return check
    return mark


def as_numpy(value):
    """numpy array from an NDArray, a numpy array, a list or a number."""
    return value.asnumpy() if hasattr(value, 'asnumpy') else np.asarray(value)


def assert_close(actual, expected, what, rtol=1e-5, atol=1e-6):
    """Fail with a short message naming `what` and the largest difference. The shape and
    type of `actual` (a probe's data) are checked before it is cast: a large array handed
    back costs nothing more than it came in."""
    actual, expected = as_numpy(actual), as_numpy(expected).astype(np.float64)
    if actual.dtype.kind not in 'biuf':
        raise AssertionError('%s: not numbers (%s)' % (what, actual.dtype))
    if actual.shape != expected.shape:
        raise AssertionError('%s: shape %s, expected %s' % (what, actual.shape, expected.shape))
    actual = actual.astype(np.float64)
    if not np.all(np.isfinite(actual)) and np.all(np.isfinite(expected)):
        raise AssertionError('%s: not finite' % what)
    if not np.allclose(actual, expected, rtol=rtol, atol=atol):
        worst = np.max(np.abs(actual - expected))
        raise AssertionError('%s differs from the expected values (largest difference %.3g)'
                             % (what, worst))
