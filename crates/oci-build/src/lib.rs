//! Builds Python function images as reproducible OCI layers on a base image
