"""The hotdog stand-in: the real archive's layout, PNG pictures of 250-500 pixels, its sha1."""
import hashlib
import io
import zipfile

from PIL import Image

from benchmarks import hotdog_standin


def test_layout_sizes_and_sha1(tmp_path):
    path, sha1 = hotdog_standin.make_standin(str(tmp_path), train=3, test=2, seed=1)
    with open(path, 'rb') as f:
        assert hashlib.sha1(f.read()).hexdigest() == sha1
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        assert all(i.compress_type == zipfile.ZIP_STORED for i in infos)
        names = sorted(i.filename for i in infos)
        assert names == sorted('hotdog/%s/%s/%d.png' % (split, cls, i)
                               for split, n in (('train', 3), ('test', 2))
                               for cls in ('hotdog', 'not-hotdog') for i in range(n))
        for name in names:
            img = Image.open(io.BytesIO(zf.read(name)))
            assert img.format == 'PNG' and img.mode == 'RGB'
            assert all(250 <= side <= 500 for side in img.size)
    assert not (tmp_path / 'hotdog.zip.part').exists()
