"""What the tests of an assignment use: the `graded` decorator and a few checks.

A test is a function `test_<what>(sub)` taking the student's module, decorated with
`@graded(points, timeout=seconds)`; it passes when it returns and fails on an exception.
The grader reads the decorator's arguments without running the file, so they must be literals.
"""
import numpy as np


def graded(points, timeout=30):
    """Mark a test function as worth `points`, to be stopped after `timeout` seconds."""
    def mark(test):
        test.points, test.timeout = points, timeout
        return test
    return mark


def as_numpy(value):
    """numpy array from an NDArray, a numpy array, a list or a number."""
    return value.asnumpy() if hasattr(value, 'asnumpy') else np.asarray(value)


def assert_close(actual, expected, what, rtol=1e-5, atol=1e-6):
    """Fail with a short message naming `what` and the largest difference."""
    actual, expected = as_numpy(actual).astype(np.float64), as_numpy(expected)
    if actual.shape != expected.shape:
        raise AssertionError('%s: shape %s, expected %s' % (what, actual.shape, expected.shape))
    if not np.allclose(actual, expected, rtol=rtol, atol=atol):
        worst = np.max(np.abs(actual - expected))
        raise AssertionError('%s differs from the expected values (largest difference %.3g)'
                             % (what, worst))
