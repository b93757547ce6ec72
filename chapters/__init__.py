"""One runnable script per chapter: `python -m chapters.<name> [--quick] [--help]`."""
