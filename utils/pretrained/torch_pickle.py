"""Reading a PyTorch state_dict file into numpy arrays, without torch.

Only the legacy (non-zip) format written by torch.save before PyTorch 1.6 is read: five pickle
records in a row (magic number, protocol version, system info, the state_dict itself whose
tensors point at storages by key, the list of storage keys), then each storage's raw bytes,
preceded by its element count as a little-endian int64.

A pickle can run any importable callable while it loads. The unpickler here resolves only the
names a state_dict needs (OrderedDict, the tensor rebuild function, storage types) and refuses
everything else, and the file's sha256 is checked before any of it is read.
"""
import collections
import pickle
import zipfile

import numpy as np

from ..errors import UserError
from ..files import file_digest

LEGACY_MAGIC = 0x1950a86a20f9469cfc6c
LEGACY_PROTOCOL = 1001

STORAGE_DTYPES = {
    'FloatStorage': np.float32, 'DoubleStorage': np.float64, 'HalfStorage': np.float16,
    'LongStorage': np.int64, 'IntStorage': np.int32, 'ShortStorage': np.int16,
    'CharStorage': np.int8, 'ByteStorage': np.uint8, 'BoolStorage': np.bool_,
}


class StorageType:
    """Stands for torch.<X>Storage inside the pickle: only its numpy dtype matters here."""

    def __init__(self, name):
        self.name = name
        self.dtype = np.dtype(STORAGE_DTYPES[name])


class Storage:
    """A flat storage whose bytes come after the pickles; filled in by `read_state_dict`."""

    def __init__(self, dtype, numel):
        self.dtype = dtype
        self.numel = numel
        self.array = None


class LazyTensor:
    """A tensor whose storage is not read yet: (storage, offset, size, stride)."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.stride = storage, offset, stride
        self.size = tuple(size) if isinstance(size, (tuple, list)) else size  # checked later

    def to_numpy(self):
        flat = self.storage.array
        itemsize = flat.dtype.itemsize
        if any(n == 0 for n in self.size):
            return np.zeros(self.size, flat.dtype)
        # The largest index the view touches: all offsets and strides are non-negative.
        end = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride)) + 1
        if end > len(flat):
            raise ValueError('it reaches element %d of a storage of %d' % (end - 1, len(flat)))
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset:], shape=self.size,
            strides=tuple(s * itemsize for s in self.stride))
        return np.array(view)  # a copy: the storage buffer can go


def _non_negative_ints(values):
    return all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values)


def _check_layout(path, name, tensor):
    """Refuse a tensor that is not a view inside its storage.

    as_strided trusts its arguments: a negative offset or stride, or a size past the end,
    would read memory outside the storage.
    """
    if not (isinstance(tensor.size, tuple) and isinstance(tensor.stride, (tuple, list))
            and len(tensor.size) == len(tensor.stride)
            and _non_negative_ints((tensor.offset,) + tensor.size + tuple(tensor.stride))):
        raise UserError('%s: tensor %s has offset %r, size %r and stride %r: they must be '
                        'non-negative integers, one stride per dimension; the file is damaged '
                        'or crafted' % (path, name, tensor.offset, tensor.size, tensor.stride))
    try:
        return tensor.to_numpy()
    except ValueError as err:
        raise UserError('%s: tensor %s lies outside its storage (%s); the file is damaged or '
                        'crafted' % (path, name, err)) from None


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    return LazyTensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    return data


ALLOWED = {
    ('collections', 'OrderedDict'): collections.OrderedDict,
    ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor_v2,
    ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
}
ALLOWED.update({('torch', name): StorageType(name) for name in STORAGE_DTYPES})


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves the names in ALLOWED and nothing else; storages via persistent ids."""

    def __init__(self, file, path, storages=None):
        super().__init__(file)
        self.path = path
        self.storages = storages

    def find_class(self, module, name):
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise UserError('%s asks for %s.%s while loading: a weights file holds only tensors '
                            'and containers, so it is refused (it may be malicious or not a '
                            'weights file)' % (self.path, module, name)) from None

    def persistent_load(self, saved_id):
        if self.storages is None or not isinstance(saved_id, tuple) or saved_id[0] != 'storage':
            raise UserError('%s: unexpected persistent id %r in the pickle; refused'
                            % (self.path, saved_id[:1]))
        # ('storage', storage type, key, location, element count, view metadata)
        _, storage_type, key, _, numel, view = saved_id
        if not isinstance(storage_type, StorageType):
            raise UserError('%s: storage of unknown type %r; refused' % (self.path, storage_type))
        if view is not None:
            raise UserError('%s: storage views are not supported' % self.path)
        if key not in self.storages:
            self.storages[key] = Storage(storage_type.dtype, int(numel))
        return self.storages[key]


def read_state_dict(path, sha256):
    """The state_dict in the torch file at `path` as {key: numpy array}, in file order.

    The file must have the given sha256 (checked first) and be in the legacy format.
    """
    actual = file_digest(path)
    if actual != sha256:
        raise UserError('%s has sha256 %s, expected %s: the file is damaged or a different '
                        'one; reinstall it' % (path, actual, sha256))
    if zipfile.is_zipfile(path):
        raise UserError('%s is in the zip format of torch >= 1.6; only the legacy format is '
                        'read here' % path)
    with open(path, 'rb') as f:
        header = [RestrictedUnpickler(f, path).load() for _ in range(3)]
        if header[0] != LEGACY_MAGIC or header[1] != LEGACY_PROTOCOL:
            raise UserError('%s is not a legacy torch file (magic %r, protocol %r)'
                            % (path, header[0], header[1]))
        if not header[2].get('little_endian', False):
            raise UserError('%s was written on a big-endian machine; not supported' % path)
        storages = {}
        state = RestrictedUnpickler(f, path, storages).load()
        keys = RestrictedUnpickler(f, path).load()
        if not isinstance(state, dict) or sorted(keys) != sorted(storages):
            raise UserError('%s does not hold a state_dict of tensors' % path)
        for key in keys:
            storage = storages[key]
            numel = int(np.frombuffer(f.read(8), '<i8')[0])
            if numel != storage.numel:
                raise UserError('%s: storage %s holds %d elements, the pickle says %d'
                                % (path, key, numel, storage.numel))
            raw = f.read(numel * storage.dtype.itemsize)
            if len(raw) != numel * storage.dtype.itemsize:
                raise UserError('%s is truncated (storage %s)' % (path, key))
            storage.array = np.frombuffer(raw, storage.dtype.newbyteorder('<'))
    arrays = collections.OrderedDict()
    for name, value in state.items():
        if not isinstance(value, LazyTensor):
            raise UserError('%s: entry %r is not a tensor' % (path, name))
        arrays[name] = _check_layout(path, name, value)
    return arrays
