"""The chapters as a static, offline book: `make book` (bookgen.build) executes each chapter's
cells (cached), renders them with their outputs and figures into book/, and `make book-check`
(bookgen.check) opens every page in a headless Chromium. See docs/book.md."""
