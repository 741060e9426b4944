//! Integration tests of coda-capabilities against real servers on loopback.
