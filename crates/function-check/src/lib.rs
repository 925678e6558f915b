//! Validation of Python function sources and requirements before a build
