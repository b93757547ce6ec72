# %% [markdown]
# # Using a pretrained network as it is: the top-5 ImageNet classes of a few real photos
#
# Follows "使用 Keras 中预训练网络" (using pretrained models from Keras) in the reading notes
# "Hands-on Machine Learning(3)" (《Hands-on Machine Learning》第二部分阅读笔记(3), the CNN
# chapter): load ResNet-50
# with its ImageNet weights, preprocess the images the way the network was trained, and print
# each image's top classes with their probabilities.
#
# Here the network is any of `utils.get_pretrained`'s (default: MobileNetV2 with torchvision's
# weights, which needs no network), and the default photos are the ones shipped with
# scikit-image and matplotlib.
#
#     python -m chapters.pretrained_predict                      # offline, bundled photos
#     python -m chapters.pretrained_predict --model resnet18_v2 my_photo.jpg
#
# It took 5 s on 2 cores shared with other jobs (load 9, OMP_NUM_THREADS=1); there is no
# separate `--quick` setting.

# %%
import utils  # sets OMP_NUM_THREADS before MXNet loads

import math
import os

import matplotlib
import skimage
from mxnet import nd

from utils import opt
from utils.cli import image_file, one_of, size_in
from utils.pretrained.model_store import input_size, known_models
from utils.pretrained.torchvision_weights import OFFLINE_MODEL

# %% [markdown]
# ## Settings
#
# The photos: your files, or real photos that come with scikit-image and matplotlib, so no
# download is needed.

# %%
SKIMAGE_PHOTOS = ('coffee.png', 'chelsea.png', 'astronaut.png', 'rocket.jpg',
                  'motorcycle_left.png')
default_photos = [os.path.join(os.path.dirname(skimage.__file__), 'data', name)
                  for name in SKIMAGE_PHOTOS] + [
    os.path.join(matplotlib.get_data_path(), 'sample_data', 'grace_hopper.jpg')]
args = utils.settings(
    'pretrained_predict', 'Using a pretrained network as it is: the top-5 ImageNet classes '
    'of a few real photos',
    images=opt(None, 'image files (default: %s)'
               % ', '.join(os.path.basename(p) for p in default_photos),
               nargs='*', positional=True, type=image_file),
    model=opt(OFFLINE_MODEL, 'pretrained network, one of: %s' % ', '.join(known_models()),
              type=one_of(known_models(), 'model')),
    top=opt(5, 'classes shown per image', type=size_in(1, 1000)))
run = utils.Run(args, 'pretrained_predict')
ctx = utils.parse_devices(args.devices)[0]
paths = args.images or default_photos

# %% [markdown]
# Load the images first: a bad file fails before any weights are fetched.

# %%
images = [utils.load_image(path) for path in paths]

# %% [markdown]
# ## The pretrained network and the preprocessing it was trained with
#
# Each image's shorter side is resized to `size * 256 / 224` and its centre `size` x `size`
# cropped, then normalised as on ImageNet (`utils.preprocess`). The text's
# `keras.applications.resnet50.preprocess_input` does what Keras' ResNet-50 weights were
# trained with (channels to BGR, the ImageNet mean subtracted); the weights here (Gluon's
# and torchvision's) were trained on pixels in [0, 1] normalised with ImageNet's mean and
# standard deviation per channel, so that is what they get.

# %%
model = utils.get_pretrained(args.model, ctx=ctx)
size = input_size(args.model)
resize = size * 256 // 224
inputs = nd.concat(*[utils.preprocess(img, size, resize) for img in images], dim=0)
Y_proba = model(inputs.as_in_context(ctx)).softmax()

# %% [markdown]
# ## The top-K classes, like Keras' decode_predictions
#
# For each row of `Y_proba` (N, 1000): (class id, name, probability), best first, printed in
# the text's format.


# %%
def decode_predictions(probs, top=5):
    names, synsets = utils.imagenet_classes(), utils.imagenet_synsets()
    decoded = []
    for row in probs.asnumpy():
        best = row.argsort()[::-1][:top]
        decoded.append([(synsets[i], names[i], float(row[i])) for i in best])
    return decoded


top_K = decode_predictions(Y_proba, top=args.top)
for image_index in range(len(images)):
    print('Image #{} ({})'.format(image_index, os.path.basename(paths[image_index])))
    for class_id, name, y_proba in top_K[image_index]:
        print('  {} - {:12s} {:.2f}%'.format(class_id, name, y_proba * 100))
    print()

# %% [markdown]
# One figure: each crop with its best classes.

# %%
titles = ['\n'.join('%s %.0f%%' % (name[:18], p * 100) for _, name, p in top[:2])
          for top in top_K]
cols = min(3, len(images))
figure = run.figure('predictions.png')
crops = [utils.centre_crop(img, size, resize) for img in images]
utils.show_images(crops, math.ceil(len(images) / cols), cols, titles=titles, scale=2.6,
                  path=figure)
print('Predictions of %s drawn in %s' % (args.model, figure))
run.metrics.update(model=args.model, predictions={
    os.path.basename(p): [[name, round(prob, 4)] for _, name, prob in top]
    for p, top in zip(paths, top_K)})
run.finish()
