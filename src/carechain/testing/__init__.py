"""Test support shipped with carechain: factories, simulators and conformance suites."""
