//! trybuild cases for `saga-macros` live under `tests/ui/` (added with the macro issue).
