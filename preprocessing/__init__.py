"""From a decoded image to what a model takes: shared by the server and by training.

The server (`service.codecs.images`) decodes uploaded files and hands the image to the
pipeline a model card names (`preprocessing.card.pipeline_for`); training records the same
pipeline in the card it writes and re-fits augmented items with the same geometry, so a
model sees at serving time what it was trained for.

- `pipelines`: the named, versioned pipelines (fashion_mnist_photo v1 and v2, resize);
- `segmentation`: where the item is (background models, thresholds, components, masks);
- `geometry`: boxes of items and how a box is fitted to the frame;
- `pixels`: small statistics of pixel values (corner patches, quantiles) and alpha;
- `card`: a card's `input` block to a checked pipeline object.
"""
