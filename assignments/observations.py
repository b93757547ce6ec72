"""What a probe hands back: its observations as npz bytes (arrays, numbers and JSON text,
never a pickle), checked against limits before anything is unpacked.

The grader only checks the bytes (`check_npz`); a check process, or a notebook's public
test, unpacks them (`decode`). numpy is imported when they are looked at, not before.
"""
import io
import json
import zipfile

UNPACKED_LIMIT = 256 * 2**20  # bytes: the arrays of one probe's observations, unpacked
MEMBER_LIMIT = 10000  # arrays in one probe's observations


class Observation:
    """What one probe handed back (status 'ok' and its npz bytes), or why it handed back
    nothing. The grader never decodes the bytes itself: a check process does (`data` is for
    tests and tools that look at them)."""

    def __init__(self, status, message='', payload=b'', output='', seconds=0.0, calls=()):
        self.status, self.message, self.payload, self.output = status, message, payload, output
        self.seconds, self.calls = seconds, list(calls)

    @property
    def data(self):
        return decode(self.payload) if self.status == 'ok' else None


def check_npz(payload):
    """Check a probe's npz bytes without unpacking them: at most MEMBER_LIMIT arrays,
    UNPACKED_LIMIT bytes in all by the archive's own sizes (which the reading then holds to),
    no array larger than its member, no pickled object. Raises ValueError."""
    import numpy as np
    from numpy.lib import format as npy
    if payload.count(b'PK\x01\x02') > MEMBER_LIMIT:  # before zipfile lists the members
        raise ValueError('more than %d arrays' % MEMBER_LIMIT)
    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        members = archive.infolist()
        if len(members) > MEMBER_LIMIT:
            raise ValueError('more than %d arrays' % MEMBER_LIMIT)
        if sum(i.file_size for i in members) > UNPACKED_LIMIT:
            raise ValueError('more than %d MB of arrays' % (UNPACKED_LIMIT // 2**20))
        for member in members:
            with archive.open(member) as f:
                version = npy.read_magic(f)
                if version not in ((1, 0), (2, 0)):
                    raise ValueError('%s: npy format %s' % (member.filename[:40], version))
                shape, _, dtype = (npy.read_array_header_1_0 if version == (1, 0)
                                   else npy.read_array_header_2_0)(f)
                size = dtype.itemsize
                for n in shape:
                    size *= n
                if dtype.hasobject or size > member.file_size:
                    raise ValueError('%s: an array of %s %s in %d bytes' % (
                        member.filename[:40], shape, dtype, member.file_size))
    return np


def decode(payload):
    """A probe's npz bytes as a dict of numpy arrays and JSON values (never pickles), once
    check_npz() has found them within the limits."""
    np = check_npz(payload)
    with np.load(io.BytesIO(payload), allow_pickle=False) as npz:
        data = {key: npz[key] for key in npz.files}
    text = json.loads(bytes(data.pop('__text__', np.zeros(0, np.uint8)).tobytes()) or b'{}')
    if not isinstance(text, dict):
        raise ValueError('malformed observations')
    data.update(text)
    return data
