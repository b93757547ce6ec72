"""One runnable script per chapter: `python -m chapters.<name> [--quick] [--help]`.

READING_ORDER is the order of the book (bookgen) and of the README's chapter table (a test
checks that the table lists these, in this order).
"""
READING_ORDER = (
    'pretrained_predict',
    'fine_tuning',
    'fine_tuning_exercises',
    'how_much_data',
    'feature_extraction',
    'custom_classes',
    'simple_object_detection',
    'data_pipeline',
    'train_basics',
)
