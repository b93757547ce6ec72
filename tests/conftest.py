import os
import sys

# The project root on sys.path, and utils imported first so OMP_NUM_THREADS is set before MXNet.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import utils  # noqa: E402,F401
