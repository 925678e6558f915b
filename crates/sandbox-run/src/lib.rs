//! Runs commands from unpacked images in libcontainer sandboxes
