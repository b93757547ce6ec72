"""Using a pretrained network as it is: the top-5 ImageNet classes of a few real photos.

    python -m chapters.pretrained_predict                      # offline, bundled photos
    python -m chapters.pretrained_predict --model resnet18_v2 my_photo.jpg

The text loads Keras' ResNet-50 with its ImageNet weights, preprocesses the images the way the
network was trained and prints each image's top classes with their probabilities. Here the
network is any of utils.get_pretrained's (default: MobileNetV2 with torchvision's weights, which
needs no network), and the default photos are the ones shipped with scikit-image and
matplotlib.
"""
# %%
import utils  # sets OMP_NUM_THREADS before MXNet loads

import math
import os

import matplotlib
import skimage
from mxnet import nd

from utils.cli import Run, chapter_parser, devices_from
from utils.errors import main_guard
from utils.pretrained import (OFFLINE_MODEL, centre_crop, imagenet_synsets, input_size,
                              known_models)

SKIMAGE_PHOTOS = ('coffee.png', 'chelsea.png', 'astronaut.png', 'rocket.jpg',
                  'motorcycle_left.png')


def default_photos():
    """Real photos that come with scikit-image and matplotlib, so no download is needed."""
    skimage_dir = os.path.join(os.path.dirname(skimage.__file__), 'data')
    photos = [os.path.join(skimage_dir, name) for name in SKIMAGE_PHOTOS]
    return photos + [os.path.join(matplotlib.get_data_path(), 'sample_data', 'grace_hopper.jpg')]


def parse_args(argv=None):
    parser = chapter_parser(__doc__.splitlines()[0], default_out='out/pretrained_predict')
    parser.add_argument('images', nargs='*', help='image files (default: %s)'
                        % ', '.join(os.path.basename(p) for p in default_photos()))
    parser.add_argument('--model', default=OFFLINE_MODEL,
                        help='pretrained network, one of: %s' % ', '.join(known_models()))
    parser.add_argument('--top', type=int, default=5, help='classes shown per image')
    args = parser.parse_args(argv)
    if not 1 <= args.top <= 1000:
        parser.error('--top %d: give a number of classes from 1 to 1000' % args.top)
    return args


# %% [markdown]
# ## Top-K predictions, like Keras' decode_predictions

# %%
def decode_predictions(probs, top=5):
    """For each row of `probs` (N, 1000), [(class id, name, probability)] best first."""
    names, synsets = utils.imagenet_classes(), imagenet_synsets()
    decoded = []
    for row in probs.asnumpy():
        best = row.argsort()[::-1][:top]
        decoded.append([(synsets[i], names[i], float(row[i])) for i in best])
    return decoded


@main_guard
def main(argv=None):
    args = parse_args(argv)
    run = Run(args, 'pretrained_predict')
    ctx = devices_from(args)[0]
    paths = args.images or default_photos()

    # %% Load the images first: a bad file fails before any weights are fetched
    images = [utils.load_image(path) for path in paths]

    # %% The pretrained network and the preprocessing it was trained with
    model = utils.get_pretrained(args.model, ctx=ctx)
    size = input_size(args.model)  # crop `size` of the shorter side resized to size * 256/224
    resize = size * 256 // 224
    inputs = nd.concat(*[utils.preprocess(img, size, resize) for img in images], dim=0)
    Y_proba = model(inputs.as_in_context(ctx)).softmax()

    # %% The top-K classes of each image
    top_K = decode_predictions(Y_proba, top=args.top)
    for image_index in range(len(images)):
        print('Image #{} ({})'.format(image_index, os.path.basename(paths[image_index])))
        for class_id, name, y_proba in top_K[image_index]:
            print('  {} - {:12s} {:.2f}%'.format(class_id, name, y_proba * 100))
        print()

    # %% One figure: each crop with its best classes
    titles = ['\n'.join('%s %.0f%%' % (name[:18], p * 100) for _, name, p in top[:2])
              for top in top_K]
    cols = min(3, len(images))
    figure = run.figure('predictions.png')
    crops = [centre_crop(img, size, resize) for img in images]
    utils.show_images(crops, math.ceil(len(images) / cols), cols, titles=titles, scale=2.6,
                      path=figure)
    print('Predictions of %s drawn in %s' % (args.model, figure))
    run.metrics.update(model=args.model, predictions={
        os.path.basename(p): [[name, round(prob, 4)] for _, name, prob in top]
        for p, top in zip(paths, top_K)})
    run.finish()


if __name__ == '__main__':
    main()
