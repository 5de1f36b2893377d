//! Cross-crate end-to-end tests live beside this file; the library itself is empty.
