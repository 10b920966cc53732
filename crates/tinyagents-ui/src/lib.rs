//! The web debugger (in progress).
